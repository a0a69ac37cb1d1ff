"""The Asterisk side and the heart of the daemon.

Modules:
- ``cti.amiproto``: AMI wire protocol, sans I/O (bytes in, frames out; actions to bytes).
- ``cti.ami``: the asyncio AMI client: login, actions with a shape and a timeout,
  reconnect with backoff, keepalive, resync hook.
- ``cti.calls``: the call model, pure: AMI frames in, calls and domain events out.
- ``cti.events``: domain events and the in-process bus.
- ``cti.store``: PostgreSQL: migrations, the batching writer, the embedded server.
- ``cti.config``, ``cti.logs``, ``cti.cli``, ``cti.daemon``: the shell.
"""
