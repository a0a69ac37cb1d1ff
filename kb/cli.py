"""``cti kb ...``: the knowledge base's upkeep from the command line (docs/knowledge.md).

    cti kb fill-products [--customer ID ...]

Fills ``customer_products`` from what the center already has: the customers' tickets (a type
or title naming a product articles are linked to) and their ``product:NAME`` tags
(``kb.products``). Run it after an import of tickets, or nightly; it only adds, and never
replaces what the CRM or an import said. Exit codes: 0 done, 2 usage.
"""
from __future__ import annotations

import argparse
from typing import Any

import asyncpg

from kb import learn_store


def add_parser(sub: Any) -> None:
    kb = sub.add_parser("kb", help="knowledge base upkeep (docs/knowledge.md)").add_subparsers(
        dest="kb_command", required=True)
    fp = kb.add_parser("fill-products", help="the customers' products from their tickets and product: tags")
    fp.add_argument("--customer", action="append", metavar="ID", help="only this customer (repeatable)")


async def run(args: argparse.Namespace, dsn: str) -> int:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        written = await learn_store.fill_products(pool, args.customer)
    finally:
        await pool.close()
    total = sum(written.values())
    detail = ", ".join(f"{n} from {source}s" for source, n in sorted(written.items()))
    print(f"{total} customer products written" + (f" ({detail})" if detail else ""))
    return 0
