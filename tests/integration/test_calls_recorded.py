"""Real calls through the sandbox end up in PostgreSQL, as Asterisk itself saw them."""
from __future__ import annotations

import asyncpg

from cti.demo import place_call, set_demo_times
from tests.integration.conftest import eventually

NAMES = [
    "Jürgen Müller", "Ana Souza", "Chloé Dubois", "Søren Kierkegaard", "Li Wei", "O'Brien, Pat",
    "Nguyễn Văn An", "Ольга Петрова", "محمد علي", "Zoë Adams", "Robert'); DROP TABLE calls;--",
    "Émilie", "山田太郎", "Ω Omega", "Smith & Sons", "<script>x</script>", "50% off", "Tab Less",
    "A" * 40, "Dr. No",
]


async def test_twenty_calls_become_twenty_rows_matching_asterisk(daemon, demo_ami, database):
    cdrs: dict[str, list[dict[str, str]]] = {}

    def on_cdr(frame):
        if frame.name == "Cdr":
            cdrs.setdefault(frame.headers.get("UniqueID", ""), []).append(dict(frame.headers))

    demo_ami.add_listener(on_cdr)
    await set_demo_times(demo_ami, ring=(1, 1), talk=(2, 4))
    placed = []
    for n, name in enumerate(NAMES):
        placed.append(await place_call(demo_ami, caller_num=f"+4930555{n:04d}", caller_name=name, patience=120))
    ids = [p.channel_id for p in placed]

    conn = await asyncpg.connect(database)
    try:
        async def all_ended():
            rows = await conn.fetch("SELECT * FROM calls WHERE call_id = ANY($1) AND ended_at IS NOT NULL", ids)
            return {r["call_id"]: r for r in rows} if len(rows) == len(ids) else None

        rows = await eventually(all_ended, timeout=120, what="20 calls ended in the database")
        await eventually(lambda: all(i in cdrs for i in ids), timeout=15, what="a CDR for every call")
        total = await conn.fetchval("SELECT count(*) FROM calls")
        events = await conn.fetch("SELECT call_id, seq, kind FROM call_events WHERE call_id = ANY($1)"
                                  " ORDER BY call_id, seq", ids)
    finally:
        await conn.close()

    assert total == 20  # agent legs are part of their caller's call, not calls of their own
    for p in placed:
        row = rows[p.channel_id]
        assert (row["caller_num"], row["caller_name"]) == (p.caller_num, p.caller_name)
        assert row["direction"] == "inbound" and row["exten"] == "5000"
        assert row["state"] == "ended" and not row["end_estimated"]
        assert row["hangup_cause"] == 16 and row["hangup_cause_txt"] == "Normal Clearing"
        assert row["agent"] and row["agent"].startswith("Agent ")
        assert row["started_at"] <= row["answered_at"] <= row["agent_answered_at"] <= row["ended_at"]
        # Asterisk's own record of the caller's channel: CDR Duration is whole seconds.
        asterisk_duration = max(int(c["Duration"]) for c in cdrs[p.channel_id])
        assert abs(float(row["duration_s"]) - asterisk_duration) <= 1.0, (row["duration_s"], cdrs[p.channel_id])

    by_call: dict[str, list[tuple[int, str]]] = {}
    for e in events:
        by_call.setdefault(e["call_id"], []).append((e["seq"], e["kind"]))
    for call_id, timeline in by_call.items():
        assert [s for s, _ in timeline] == list(range(1, len(timeline) + 1))  # nothing lost, nothing twice
        kinds = [k for _, k in timeline]
        assert kinds[0] == "call.started" and kinds[-1] == "call.ended"
        assert "call.connected" in kinds and "call.queued" in kinds
    assert set(by_call) == set(ids)
