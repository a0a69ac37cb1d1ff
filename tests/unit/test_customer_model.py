"""CSV rows in, customer rows or rejections (naming line and column) out; merges planned."""
from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from crm.customer_model import (
    Address, BadImportFile, CustomerSnapshot, InvalidCustomer, MergeRefused, Rejected, check_header,
    normalise_tag, plan_merge, read_csv, validate_row, validate_rows,
)
from crm.phones import normalise_e164


def row(**kw):
    return {"name": "Chloé Dubois", "phones": "+33 1 23 45 67 89", **kw}


def test_a_full_row_is_normalised():
    r = validate_row(7, row(customer_id="C-1", phones="030 1234567; +49 (30) 7654321, 0030 1234567",
                            language="fr", vip="Yes", tags="VIP, lang:fr;reseller", address=" 1 rue X ",
                            postcode="75001", city="Paris", country="fr", region="paris-north", note="key under mat"),
                     country_code="49")
    assert r.line == 7 and r.customer_id == "C-1" and r.name == "Chloé Dubois"
    assert r.phones == ("+49301234567", "+49307654321", "+301234567")
    assert r.vip and r.language == "fr" and r.tags == {"vip", "lang:fr", "reseller"}
    assert r.address == Address(line1="1 rue X", postcode="75001", city="Paris", country="FR", region="paris-north")
    assert r.note == "key under mat"


def test_the_same_number_twice_in_a_row_is_kept_once():
    assert validate_row(2, row(phones="+49301234;0049 30 1234")).phones == ("+49301234",)


@pytest.mark.parametrize("fields, column, words", [
    ({"name": "  "}, "name", "required"),
    ({"name": "x" * 201}, "name", "longer"),
    ({"name": "Bob\r\nInjected: yes"}, "name", "control"),
    ({"phones": ""}, "phones", "at least one"),
    ({"phones": "+33123; call me"}, "phones", "'call me' is not a phone number"),
    ({"phones": "0301234"}, "phones", "needs --country"),
    ({"phones": "+0123456"}, "phones", "not a phone number"),
    ({"customer_id": "C 1; DROP TABLE customers"}, "customer_id", "not an id"),
    ({"language": "French"}, "language", "not a language code"),
    ({"vip": "maybe"}, "vip", "yes/no"),
    ({"tags": "good customer!"}, "tags", "not a tag"),
    ({"region": "north west"}, "region", "not a region"),
    ({"region": "south"}, "region", "unknown region 'south'"),
    ({"country": "France"}, "country", "longer"),
    ({"country": "F1"}, "country", "two-letter"),
])
def test_a_bad_field_rejects_the_row_naming_the_column(fields, column, words):
    with pytest.raises(InvalidCustomer) as err:
        validate_row(3, row(**fields), regions=frozenset({"north", "paris-north"}))
    assert err.value.field == column and words in str(err.value)


def test_rows_repeating_an_id_or_a_number_are_rejected_after_the_first():
    valid, rejected = validate_rows([
        (2, row(customer_id="A", phones="+491")),
        (3, row(customer_id="B", phones="+492")),
        (4, row(customer_id="A", phones="+493")),
        (5, row(customer_id="C", phones="+494; 00492")),
        (6, row(name="", phones="+495")),
        (7, row(customer_id="D", phones="+495")),
    ])
    assert [r.line for r in valid] == [2, 3, 7]
    assert rejected == [Rejected(4, "customer_id: 'A' already on line 2"),
                        Rejected(5, "phones: +492 already on line 3"),
                        Rejected(6, "name: is required")]
    assert str(rejected[0]) == "line 4: customer_id: 'A' already on line 2"


def test_read_csv_gives_file_lines_and_checks_the_header():
    text = ('Name,PHONES,note\n'
            'Ann,+491,"two\nlines"\n'
            '\n'
            'Bob,+492,ok,surplus\n')
    rows = read_csv(text)
    assert [line for line, _ in rows] == [2, 5]
    assert rows[0][1] == {"name": "Ann", "phones": "+491", "note": "two\nlines"}
    _, rejected = validate_rows(rows)
    assert rejected[0].line == 2 and rejected[0].reason.startswith("note:")   # a line break in a note
    assert rejected[1] == Rejected(5, "row: has more cells than the header has columns")
    for bad, words in [("", "empty"), ("name,phone\n", "unknown column 'phone'"), ("name,name,phones\n", "twice"),
                       ("name,city\n", "'phones' is missing"), ('name,phones\n"Ann,+491\n', "line")]:
        with pytest.raises(BadImportFile, match=words):
            read_csv(bad)
    assert check_header([" Name ", "Phones"]) == ["name", "phones"]


@given(st.text(max_size=30), st.text(max_size=30))
def test_hostile_cells_never_escape_validation(name, phones):
    try:
        r = validate_row(2, {"name": name, "phones": phones})
    except InvalidCustomer as exc:
        assert exc.field in {"name", "phones"}
        return
    assert r.name == name.strip() and not any(c in r.name for c in "\r\n\x00")
    assert all(normalise_e164(p) == p for p in r.phones)


def test_tags_are_lower_case_and_plain():
    assert normalise_tag(" VIP ") == "vip" and normalise_tag("Lang:FR") == "lang:fr"
    with pytest.raises(InvalidCustomer):
        normalise_tag("'; DROP")


# -- merges -----------------------------------------------------------------------

addresses = st.builds(Address, line1=st.sampled_from(["1 Main St", "1 main st.", "2 Side Rd", None]),
                      city=st.sampled_from(["Berlin", "BERLIN", "Paris"]), region=st.sampled_from(["n", "s", None]))


@st.composite
def snapshots(draw, cid):
    addrs = draw(st.lists(addresses, max_size=4))
    primary = draw(st.integers(-1, len(addrs) - 1))
    base = 100 if cid == "A" else 200
    return CustomerSnapshot(
        customer_id=cid, name=draw(st.sampled_from(["", "Ann", "Anne"])),
        language=draw(st.sampled_from([None, "en", "fr"])), vip=draw(st.booleans()),
        phones=tuple(sorted(draw(st.sets(st.sampled_from(["+491", "+492", "+493"]), max_size=2)))),
        tags=frozenset(draw(st.sets(st.sampled_from(["vip", "lang:fr", "x"])))),
        addresses=tuple((base + i, a, i == primary) for i, a in enumerate(addrs)))


@given(snapshots("A"), snapshots("B"))
def test_a_merge_loses_nothing_and_keeps_the_kept_customers_values(keep, dup):
    plan = plan_merge(keep, dup)
    assert plan.into_id == "A" and plan.from_id == "B"
    assert keep.tags | plan.tags == keep.tags | dup.tags
    assert set(keep.phones) | set(plan.phones) == set(keep.phones) | set(dup.phones)
    dup_ids = {aid for aid, _, _ in dup.addresses}
    assert set(plan.addresses_moved) | set(plan.addresses_dropped) == dup_ids
    assert not set(plan.addresses_moved) & set(plan.addresses_dropped)
    # every place the duplicate had is still there after the merge, once
    after = [a for _, a, _ in keep.addresses] + [a for aid, a, _ in dup.addresses if aid in plan.addresses_moved]
    assert {a.key() for a in after} == {a.key() for _, a, _ in keep.addresses + dup.addresses}
    moved_keys = [a.key() for aid, a, _ in dup.addresses if aid in plan.addresses_moved]
    assert len(moved_keys) == len(set(moved_keys))
    assert plan.name == (keep.name or dup.name) and plan.vip == (keep.vip or dup.vip)
    assert plan.language == (keep.language or dup.language)
    assert plan.demote_primary == any(p for _, _, p in keep.addresses)


def test_a_customer_is_not_merged_into_itself():
    a = CustomerSnapshot("A", "Ann", None, False)
    with pytest.raises(MergeRefused, match="into itself"):
        plan_merge(a, a)
