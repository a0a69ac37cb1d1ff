"""Omnichannel: tasks of chat, e-mail and message channels routed through the ACD
(docs/omnichannel.md). ``omni.tasks`` is the pure model, ``omni.store`` its tables,
``omni.service`` the daemon's side (``file_task``, the entry point of every channel)."""
