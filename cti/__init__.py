"""The core of the daemon: the Asterisk side, the call model and its bus, the database and
the shell. The records calls refer to (customers, tickets, engineers) are in ``crm``.

Asterisk and calls:
- ``cti.amiproto``: AMI wire protocol, sans I/O (bytes in, frames out; actions to bytes).
- ``cti.ami``: the asyncio AMI client: login, actions with a shape and a timeout,
  reconnect with backoff, keepalive, resync hook; ``cti.ami_types``: what it hands out
  and keeps (``Reply``, a pending action assembling it, ``AmiHealth``).
- ``cti.calls``: the call model, pure: AMI frames in, calls and domain events out.
- ``cti.nodes``: several Asterisk nodes, pure: the node list, ids qualified by node, the
  dial string through the inter-node trunk, when a node is dead (``NodeWatch``).
- ``cti.events``: domain events and the in-process bus.
- ``cti.control``: call control, pure: typed commands in, AMI actions out.

Storage:
- ``cti.migrate``: the schema migrations (the SQL files of ``cti/migrations``).
- ``cti.writer``: the batching writer; ``cti.rows``: what it takes (a row names its table
  and statement).
- ``cti.call_db``: the calls' rows and the queries on them.
- ``cti.pg``: what every pool shares, and DSN scrubbing.
- ``cti.embedded_pg``: the embedded server, used when no database URL is set.

The shell:
- ``cti.daemon``: the core's part of the aiohttp app (database, writer, call model, AMI);
  ``server.root`` (above every package) mounts every feature on it.
- ``cti.httpserver``, ``cti.connlimits``: the HTTP listener, its deadlines and connection cap.
- ``cti.config``, ``cti.logs``, ``cti.errors`` (the ``cti`` command is ``server.cli``).

Demo and tests: ``cti.demo`` and ``cti.demo_ivr`` (simulated callers), ``cti.sandbox`` (the
sandbox's generated secrets).
"""
