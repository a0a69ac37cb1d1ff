"""What the batching writer (``cti.writer.Writer``) takes: a ``Row``, and ``TableRow`` to make one.

A row names its table and its statement, gives the statement's arguments, and says
whether it is a *snapshot* (it has a key: while rows wait, only the latest of each
type and key is kept) or is written once, in order (no key). The writer knows no
more of it, so a feature brings its own rows (the ACD's are in ``acd.rows``).
"""
from __future__ import annotations

from typing import Any, ClassVar, Protocol


class Row(Protocol):
    """What the writer needs of a row (frozen dataclasses: ``cti.call_db.CallRow``, ...)."""

    table: ClassVar[str]          # named in logs
    statement: ClassVar[str]      # idempotent: written twice changes nothing; $1.. from args()

    def key(self) -> str | None:
        """The snapshot's key (the latest row of this type and key wins), or None:
        written once, in order."""

    def args(self) -> tuple[Any, ...]:
        """The statement's arguments. Raises TypeError/ValueError for data that cannot
        be encoded (the row is then refused alone)."""

    def ident(self) -> dict[str, Any]:
        """What identifies the row in logs; never its data (caller data, free-form jsonb)."""


class TableRow:
    """A ``Row`` told by class attributes, for frozen dataclasses: ``columns`` (the
    statement's arguments, in order), ``key_column`` (None: written once, in order) and
    ``ident_columns`` (what logs show of it)."""

    __slots__ = ()
    table: ClassVar[str]
    statement: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]
    key_column: ClassVar[str | None] = None
    ident_columns: ClassVar[tuple[str, ...]]

    def key(self) -> str | None:
        return None if self.key_column is None else getattr(self, self.key_column)

    def args(self) -> tuple[Any, ...]:
        return tuple(getattr(self, col) for col in self.columns)

    def ident(self) -> dict[str, Any]:
        return {col: getattr(self, col) for col in self.ident_columns}
