"""The top of the daemon: the composition root (``server.root.build``) and the ``cti``
command (``server.cli``). Everything below is wired from here; nothing imports it."""
