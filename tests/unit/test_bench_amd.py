"""The AMD bench's counting (bench/amd_greetings.summarise, pure)."""
from __future__ import annotations

import pytest

from bench.amd_greetings import MACHINES, PEOPLE, VOICES, Verdict, summarise


def v(kind, status, label="x"):
    return Verdict(kind, label, "en", status, None)


def test_false_positives_misses_and_the_share_of_machine_verdicts_that_were_people():
    rows = [v("person", "HUMAN")] * 8 + [v("person", "MACHINE")] * 2 + [v("machine", "MACHINE")] * 3 \
        + [v("machine", "NOTSURE"), v("machine", None)]
    s = summarise(rows, person_share=0.25, machine_share=0.12)
    assert (s["people"], s["machines"], s["no_verdict"]) == (10, 5, 1)
    assert s["false_positive_rate"] == pytest.approx(0.2)
    assert s["machine_missed_rate"] == pytest.approx(1 / 5)
    # 0.2 x 0.25 people called machines beside 0.6 x 0.12 machines called machines.
    assert s["share_of_machine_verdicts_that_were_people"] == pytest.approx(0.05 / (0.05 + 0.072))
    assert s["people_called"]["MACHINE"] == 2 and s["machines_called"][None] == 1


def test_no_call_is_no_rate():
    s = summarise([])
    assert (s["false_positive_rate"], s["machine_missed_rate"], s["share_of_machine_verdicts_that_were_people"]) \
        == (0.0, 0.0, 0.0)


def test_the_bench_places_what_its_integration_test_expects():
    assert (len(PEOPLE) * len(VOICES), len(MACHINES) * len(VOICES)) == (30, 21)
