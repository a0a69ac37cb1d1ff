"""The records calls refer to: customers, tickets (work orders) and field engineers.

Asterisk knows none of it: the call model, the bus and the daemon import nothing from here.
``api`` (screen-pops, the dialplan hook, the REST routes), ``ivr`` (caller lookups) and the
``cti`` command's import subcommands use it; it uses ``cti`` for errors only.

Pure cores (no I/O, no clock: ``now`` is an argument):
- ``crm.phones``: E.164 normalisation, the one every lookup and import uses.
- ``crm.customer_model``: CSV row validation for imports, merge planning.
- ``crm.tickets``: the ticket machine: one transition table, typed commands in, the new
  ticket and its audit entry out (docs/tickets.md).
- ``crm.ticket_notify``: the dispatch notification an engineer gets, and the ``Sender``
  interface that passes it on.

Stores (asyncpg; tables in ``cti/migrations``, one ordered history with the rest):
- ``crm.customer_lookup``: caller-ID and account lookups (one index probe each).
- ``crm.customer_store``: the full record, the 360-degree view, merges, CSV imports.
- ``crm.ticket_store``: create, transition (row locked, the machine applied, one transaction),
  links and the work lists.
- ``crm.engineers``: field engineers by region, and ``check_dispatch`` (pure).
- ``crm.ticket_notifier``: sends the notifications committed changes call for, in tasks it
  owns, and records each outcome.

docs/customers.md and docs/tickets.md describe both.
"""
