"""How often Asterisk's AMD, as the campaign dialplan runs it, takes a person for a machine
(the false positives the abandonment rate must count) and a machine for a person.

Greetings spoken by espeak-ng (several voices): people answering ("Hello?", "Yes?", "Hi, this
is Anna.", "Hello? ... Hello?") and answering machines (long and short messages). Each is a
call through the sandbox: an Originate of ``Local/g<prompt>@cti-demo-greeting/n`` (the called
party: a second of ringing, the greeting, then silence: asterisk-config/demo) into the
dialer's own context ``cti-dialer``, which runs ``AMD()`` with asterisk-config/amd.conf and
reports ``UserEvent(CtiDialer) Step: amd`` with ``AMDSTATUS`` and ``AMDCAUSE``, exactly as for
a campaign call. ``summarise`` (pure) counts the verdicts.

Run through the integration tests (it needs the sandbox):
``CTI_BENCH_RESULTS=1 scripts/test-isolated amd tests/integration/test_amd_bench.py`` (writes
``bench/results/amd-<date>-<commit>.json``).

Figures (docs/dialer.md, "AMD"; BENCHMARKS.md):
- ``false_positive_rate``: people AMD called ``MACHINE`` / people;
- ``machine_missed_rate``: machines AMD called ``HUMAN`` or ``NOTSURE`` / machines (the runner
  takes ``NOTSURE`` for a person: an agent gets the machine);
- ``share_of_machine_verdicts_that_were_people`` at a given mix of people and machines among
  answered calls (the simulator's: 25% of dials a person, 12% a machine): the
  ``amd_false_positive_share`` pacing counts as abandoned.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from emergency.prompts import speak

CONTEXT = "cti-demo-greeting"
VOICES = ("en", "en-us+m3", "en+f3")

#: A greeting: its parts, text or a pause in seconds.
Part = str | float

PEOPLE: list[tuple[str, list[Part]]] = [
    ("hello?", ["Hello?"]),
    ("hello.", ["Hello."]),
    ("yes?", ["Yes?"]),
    ("yeah, hello?", ["Yeah, hello?"]),
    ("speaking.", ["Speaking."]),
    ("hi, this is anna.", ["Hi, this is Anna."]),
    ("hello, who is this?", ["Hello, who is this?"]),
    ("good morning, smith residence.", ["Good morning, Smith residence."]),
    ("hello? ... hello?", ["Hello?", 1.2, "Hello?"]),
    ("hello, mark speaking.", ["Hello, Mark speaking."]),
]
MACHINES: list[tuple[str, list[Part]]] = [
    ("family, leave a message", ["Hello, you have reached the Morgan family. We cannot take your call right now."
                                 " Please leave your name and number after the tone."]),
    ("not available", ["The person you are calling is not available. Please leave a message after the tone."]),
    ("office closed", ["Thank you for calling. Our office is now closed. Please call again between nine and five."]),
    ("anna, call you back", ["Hi, this is Anna. I can't come to the phone, leave me a message and I'll call you"
                             " back."]),
    ("you've reached mark", ["You've reached Mark. Leave a message."]),
    ("hello? ... joke", ["Hello?", 1.0, "Ha, got you, I'm not here. Leave a message."]),
    ("leave a message.", ["Please leave a message."]),
]


@dataclass(frozen=True, slots=True)
class Sample:
    kind: str           # person | machine
    label: str
    voice: str
    prompt: str         # the sound file, as Asterisk names it (no extension)


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str
    label: str
    voice: str
    status: str | None  # AMDSTATUS (None: no verdict came)
    cause: str | None


def _sox(*argv: str) -> None:
    subprocess.run(["sox", *argv], check=True, capture_output=True, timeout=30)


async def make(outdir: str, asterisk_dir: str, voices: Iterable[str] = VOICES) -> list[Sample]:
    """Every greeting in every voice as an 8 kHz WAV in ``outdir`` (seen by Asterisk as
    ``asterisk_dir``). Parts are spoken one by one and joined with the pauses."""
    Path(outdir).mkdir(parents=True, exist_ok=True)
    samples = []
    for kind, table in (("person", PEOPLE), ("machine", MACHINES)):
        for label, parts in table:
            for voice in voices:
                name = "amd-" + hashlib.sha256(f"{voice}\n{parts!r}".encode()).hexdigest()[:16]
                out = Path(outdir) / f"{name}.wav"
                if not out.exists():
                    pieces = []
                    for i, p in enumerate(parts):
                        if isinstance(p, str):
                            pieces.append(await speak(p, outdir, voice=voice) + ".wav")
                        else:
                            gap = Path(outdir) / f".{name}.gap{i}.wav"
                            _sox("-n", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(gap),
                                 "trim", "0", f"{p:.2f}")
                            pieces.append(str(gap))
                    tmp = Path(outdir) / f".{name}.{os.getpid()}.wav"
                    if len(pieces) == 1:
                        _sox(pieces[0], str(tmp))
                    else:
                        _sox(*pieces, str(tmp))
                    os.chmod(tmp, 0o644)
                    os.replace(tmp, out)
                    for p in pieces:
                        if Path(p).name.startswith("."):
                            Path(p).unlink(missing_ok=True)
                samples.append(Sample(kind, label, voice, f"{asterisk_dir}/{name}"))
    return samples


async def run(ami: Any, samples: list[Sample], *, concurrency: int = 6, timeout: float = 30.0) -> list[Verdict]:
    """Place every sample as a campaign call would be answered; AMD's verdict on each."""
    waiting: dict[str, asyncio.Future[tuple[str, str]]] = {}

    def on_event(frame: Any) -> None:
        if frame.get("Event") != "UserEvent" or frame.get("UserEvent") != "CtiDialer" or frame.get("Step") != "amd":
            return
        fut = waiting.get(frame.get("Attempt") or "")
        if fut is not None and not fut.done():
            fut.set_result(((frame.get("Status") or "").strip(), (frame.get("Cause") or "").strip()))

    ami.add_listener(on_event)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, s: Sample) -> Verdict:
        async with gate:
            key = str(900000 + i)
            fut = waiting[key] = asyncio.get_running_loop().create_future()
            leg = f"amdbench-{key}"
            await ami.send("Originate", {
                "Channel": f"Local/g{s.prompt.rsplit('/', 1)[-1]}@{CONTEXT}/n", "Context": "cti-dialer", "Exten": "s",
                "Priority": "1", "Timeout": "20000", "Async": "true", "ChannelId": leg, "OtherChannelId": leg + "-2",
                "Variable": [f"CTI_DIALER_ATTEMPT={key}", "CTI_DIALER_MACHINE=retry", "CTI_QUEUE=amd-bench",
                             "CTI_PRIORITY=9"],
            }, shape="single")
            try:
                status, cause = await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                status, cause = None, None
            return Verdict(s.kind, s.label, s.voice, status, cause)

    try:
        return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(samples))))
    finally:
        ami.remove_listener(on_event)


def summarise(verdicts: Iterable[Verdict], *, person_share: float = 0.25, machine_share: float = 0.12) -> dict:
    """The counts and rates (module docstring). ``person_share``, ``machine_share``: of dials,
    those answered by a person, by a machine (for the share of machine verdicts that were
    people at that mix)."""
    rows = list(verdicts)
    people = [v for v in rows if v.kind == "person"]
    machines = [v for v in rows if v.kind == "machine"]

    def count(vs: list[Verdict], *statuses: str | None) -> int:
        return sum(1 for v in vs if v.status in statuses)

    fp = count(people, "MACHINE")
    tp = count(machines, "MACHINE")
    fpr = fp / len(people) if people else 0.0
    tpr = tp / len(machines) if machines else 0.0
    called_machine = fpr * person_share + tpr * machine_share
    by_label: dict[str, dict[str, int]] = {}
    for v in rows:
        by_label.setdefault(f"{v.kind}: {v.label}", {}).setdefault(str(v.status), 0)
        by_label[f"{v.kind}: {v.label}"][str(v.status)] += 1
    return {
        "people": len(people), "machines": len(machines),
        "people_called": {s: count(people, s) for s in ("HUMAN", "MACHINE", "NOTSURE", "HANGUP", None)},
        "machines_called": {s: count(machines, s) for s in ("HUMAN", "MACHINE", "NOTSURE", "HANGUP", None)},
        "false_positive_rate": fpr,
        "machine_missed_rate": count(machines, "HUMAN", "NOTSURE") / len(machines) if machines else 0.0,
        "share_of_machine_verdicts_that_were_people": (fpr * person_share / called_machine) if called_machine else 0.0,
        "mix": {"person_share": person_share, "machine_share": machine_share},
        "by_greeting": by_label,
        "no_verdict": count(rows, None),
    }


def as_rows(verdicts: Iterable[Verdict]) -> list[dict]:
    return [asdict(v) for v in verdicts]
