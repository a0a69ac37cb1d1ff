"""E-mail as a channel (docs/mail.md): the SMTP receiver, pure parsing, threading and
sanitising, threads in PostgreSQL, replies through SMTP, the agents' routes.

Pure: ``mail.parse``, ``mail.sanitize``, ``mail.outbound``. Shell: ``mail.service``
(receiver, sender, the ``FileTask`` work-item hook), ``mail.store``, ``mail.routes``.
"""
