"""Lead lists from CSV: a line-numbered report, zones resolved at import; hostile text
raises only ``BadLeadFile`` (hypothesis)."""
from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from crm.customer_model import Rejected
from dialer.lead_import import BadLeadFile, parse_leads

CSV = """phone,name,customer_id,tz
+1 317 555 0100,Ann,C1,
0301234567,Bob,,
+12195550100,Cy,,America/Chicago
+999123456,Di,,
+13175550100,Ann again,,
not a number,Ed,,
+16025550100,Fay,bad id!,
+16025550101,Gil,,Mars/Base

+79161234567,Hal,,,extra
+61491570156,"Ivy ""the"" caller",C9,
"""


def test_valid_rows_come_with_their_zones_and_every_rejection_names_its_line():
    valid, rejected = parse_leads(CSV, country_code="49")
    assert [(r.line, r.phone) for r in valid] == [(2, "+13175550100"), (3, "+49301234567"), (4, "+12195550100"),
                                                  (12, "+61491570156")]
    assert valid[0].zones == {"America/New_York"} and valid[0].customer_id == "C1"
    assert valid[2].zones == {"America/Chicago"}                 # its own zone overrides the split area code
    assert valid[3].name == 'Ivy "the" caller' and "Australia/Perth" in valid[3].zones
    assert [r.line for r in rejected] == [5, 6, 7, 8, 9, 11]
    assert rejected[1] == Rejected(6, "phone: +13175550100 already on line 2")
    assert rejected[2] == Rejected(7, "phone: 'not a number' is not a phone number")
    assert rejected[0].reason.startswith("phone: no country") and "give the lead a tz" in rejected[0].reason
    assert rejected[3].reason.startswith("customer_id:")
    assert rejected[4].reason.startswith("tz: no time zone called 'Mars/Base'")
    assert rejected[5].reason == "row: has more cells than the header has columns"


@pytest.mark.parametrize("text,match", [("", "empty"), ("name\nAnn\n", "'phone' is missing"),
                                        ("phone,colour\n+1\n", "unknown column"), ("phone,phone\n", "twice"),
                                        ('phone\n"+1317\n', "line")])
def test_an_unreadable_file_is_refused_with_a_reason(text, match):
    with pytest.raises(BadLeadFile, match=match):
        parse_leads(text)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(body=st.text(st.characters(codec="utf-8"), max_size=400),
       header=st.sampled_from(["phone", "phone,name,tz", "tz,phone,customer_id", "name"]))
def test_hostile_text_gives_a_report_or_bad_lead_file_and_nothing_else(body, header):
    try:
        valid, rejected = parse_leads(header + "\n" + body)
    except BadLeadFile:
        return
    lines = [r.line for r in valid] + [r.line for r in rejected]
    assert len(lines) == len(set(lines))
    assert all(r.phone.startswith("+") and r.zones for r in valid)
