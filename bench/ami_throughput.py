"""AMI events per second through our parser + call model, beside panoramisk 1.4's bare parsing.

All runs in one process, one core, on the same bytes: every transcript captured
from the sandbox (tests/fixtures/ami/*.ami) concatenated and repeated. The
stream is cut into 64 KiB reads, as a busy socket delivers it.

    .venv/bin/python bench/ami_throughput.py [--repeat 40] [--rounds 5]

Rows:
- panoramisk bare parse: AMIProtocol.data_received with event dispatch turned
  off (a no-op factory): framing, decoding and Message objects, nothing else.
- ours, parse only: AmiParser.feed.
- ours, parse + call model: AmiParser.feed, then CallModel.feed for each event
  (the daemon's whole hot path up to the bus).
"""
from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cti.amiproto import AmiParser  # noqa: E402
from cti.calls import CallModel  # noqa: E402

CHUNK = 65536


def load_stream(repeat: int) -> tuple[bytes, int]:
    parts = []
    for path in sorted((ROOT / "tests" / "fixtures" / "ami").glob("*.ami")):
        data = path.read_bytes()
        # Drop the greeting: the stream is replayed as if one long connection.
        if data.startswith(b"Asterisk Call Manager/"):
            data = data[data.index(b"\n") + 1:]
        parts.append(data)
    one = b"".join(parts)
    stream = b"Asterisk Call Manager/11.0.0\r\n" + one * repeat
    events = sum(1 for f in AmiParser().feed(stream) if f.name is not None)
    return stream, events


def chunks(stream: bytes) -> list[bytes]:
    return [stream[i:i + CHUNK] for i in range(0, len(stream), CHUNK)]


def run_panoramisk(pieces: list[bytes]) -> None:
    from panoramisk.ami_protocol import AMIProtocol

    class Factory:
        save_stream = None
        forgetable_actions = ()
        awaiting_actions: list = []

        def dispatch(self, message):  # bare parsing: nobody listens
            pass

        def connection_lost(self, exc):
            pass

    class Transport:
        def write(self, data):
            pass

        def close(self):
            pass

    proto = AMIProtocol()
    proto.connection_made(Transport())
    proto.factory = Factory()
    proto.encoding = "utf8"
    for piece in pieces:
        proto.data_received(piece)


def run_parse(pieces: list[bytes]) -> None:
    parser = AmiParser()
    for piece in pieces:
        parser.feed(piece)


def run_model(pieces: list[bytes]) -> None:
    parser = AmiParser()
    model = CallModel()
    feed = model.feed
    for piece in pieces:
        for frame in parser.feed(piece):
            if "Event" in frame.headers:
                feed(frame.headers, 0.0)
    assert not model.calls, "every captured call ends within its transcript"


def measure(rows, pieces, rounds: int) -> dict[str, list[float]]:
    """CPU seconds per run of each pipeline. The pipelines take turns round by
    round, so a slow spell of a shared machine hits them all alike."""
    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(rounds):
        for name, fn in rows:
            gc.collect()
            t0 = time.process_time()
            fn(pieces)
            times[name].append(time.process_time() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    stream, events = load_stream(args.repeat)
    pieces = chunks(stream)
    rows = [
        ("panoramisk 1.4 bare parse (baseline)", run_panoramisk),
        ("ours: parse only", run_parse),
        ("ours: parse + call model", run_model),
    ]
    print(f"{events} events, {len(stream) / 1e6:.1f} MB, {len(pieces)} reads of {CHUNK} B; "
          f"{args.rounds} interleaved rounds, CPU time; Python {platform.python_version()} on {platform.machine()}")
    print()
    print("| pipeline | events/s (best) | events/s (median) | CPU per event (best) | time vs baseline (median) |")
    print("|---|---:|---:|---:|---:|")
    times = measure(rows, pieces, args.rounds)
    base = statistics.median(times[rows[0][0]])
    for name, _ in rows:
        best, med = min(times[name]), statistics.median(times[name])
        print(f"| {name} | {events / best:,.0f} | {events / med:,.0f} | {best / events * 1e6:.2f} µs "
              f"| {med / base:.2f}x |")


if __name__ == "__main__":
    main()
