"""Inbound mail through the SMTP receiver into PostgreSQL: mails per second and the time of
one SMTP transaction (connect to the 250 that says it is stored), p50/p99/max; and the pure
parser alone (mails per second).

The receiver is ``mail.service.MailService`` as the daemon runs it (aiosmtpd, parse, store,
the default filer), on a scratch database; ``--clients`` stdlib smtplib clients in threads
send ``--mails`` mails in all, a mix of three kinds in turn: a plain-text mail, an HTML mail
with a script and a 50 kB attachment, a malformed multipart; every third mail answers an
earlier one (In-Reply-To), so threading lookups run too.

    .venv/bin/python bench/mail_ingest.py [--mails 600] [--clients 4]

PostgreSQL: the server on 127.0.0.1:5432 (user postgres) when it answers, in a throw-away
database; else an embedded one.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import smtplib
import socket
import statistics
import subprocess
import sys
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.harness import scratch_database  # noqa: E402
from cti.migrate import migrate  # noqa: E402
from mail.parse import parse_mail  # noqa: E402
from mail.service import MailConfig, MailService, MarkWaiting  # noqa: E402


def make_mail(i: int) -> bytes:
    kind = i % 3
    if kind == 2:
        return (f"From: c{i % 50}@example.com\r\nSubject: broken {i}\r\nMessage-ID: <m{i}@bench>\r\n"
                "Content-Type: multipart/mixed; boundary=\"never\"\r\n\r\n--wrong\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n").encode()
    m = EmailMessage()
    m["From"] = f"Customer {i % 50} <c{i % 50}@example.com>"
    m["To"] = "desk@center.test"
    m["Subject"] = f"Question {i}"
    m["Message-ID"] = f"<m{i}@bench>"
    if i >= 3 and i % 3 == 0:
        m["In-Reply-To"] = f"<m{i - 3}@bench>"
        m["References"] = f"<m{i - 3}@bench>"
    if kind == 0:
        m.set_content("Hello,\n\nmy router blinks red since this morning.\n\nRegards\n" * 5)
    else:
        m.set_content('<p>Hello <b>there</b><script>alert(1)</script><img src="https://t.test/p.gif"></p>' * 20,
                      subtype="html")
        m.add_attachment(bytes(range(256)) * 200, maintype="application", subtype="pdf", filename="invoice.pdf")
    return m.as_bytes(policy=policy.SMTP)      # CRLF line ends, as an MTA sends


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mails", type=int, default=600)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    mails = [make_mail(i) for i in range(args.mails)]

    t0 = time.perf_counter()
    for raw in mails:
        parse_mail(raw)
    parse_rate = len(mails) / (time.perf_counter() - t0)

    async with scratch_database(prefix="cti_mail") as scratch:
        await migrate(scratch.dsn)
        pool = await asyncpg.create_pool(scratch.dsn, min_size=2, max_size=10)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        service = MailService(MailConfig(listen=f"127.0.0.1:{free}", max_bytes=10_000_000, smtp=None, sender=None,
                                         sender_name=None, queue="email", hostname="center.test"),
                              pool=lambda: pool, file_task=MarkWaiting(lambda: pool))
        await service.start()
        host, port = service.address

        def send(i: int) -> float:
            start = time.perf_counter()
            with smtplib.SMTP(host, port, timeout=30) as s:
                s.sendmail(f"c{i % 50}@example.com", ["desk@center.test"], mails[i])
            return time.perf_counter() - start

        try:
            # Each client in its own thread (never a blocking wait on the loop, which serves them).
            gate = asyncio.Semaphore(args.clients)

            async def one(i: int) -> float:
                async with gate:
                    return await asyncio.to_thread(send, i)
            t0 = time.perf_counter()
            times = await asyncio.gather(*(one(i) for i in range(args.mails)))
            wall = time.perf_counter() - t0
            stored = await pool.fetchval("SELECT count(*) FROM mail_messages")
            threads = await pool.fetchval("SELECT count(*) FROM mail_threads")
            malformed = await pool.fetchval("SELECT count(*) FROM mail_messages WHERE malformed")
        finally:
            await service.stop()
            await pool.close()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    ms = [t * 1000 for t in times]
    print(json.dumps({"commit": commit, "mails": args.mails, "clients": args.clients,
                      "smtp_mails_per_s": round(args.mails / wall, 1),
                      "smtp_ms": {"p50": round(statistics.median(ms), 2), "p99": round(pct(ms, 99), 2),
                                  "max": round(max(ms), 2)},
                      "parse_only_mails_per_s": round(parse_rate, 1),
                      "stored": stored, "threads": threads, "malformed": malformed, "counts": service.counts},
                     indent=2))


if __name__ == "__main__":
    asyncio.run(main())
