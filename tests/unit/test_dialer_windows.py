"""Calling windows: zones from numbers read strictly (Indiana, Arizona, multi-zone
countries), the lead's own zone first, and the cached checker against the reference."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from dialer.windows import CallingWindow, InvalidWindow, UnknownZone, WindowChecker, ZoneMap

UTC = timezone.utc
ZONES = ZoneMap()
WINDOW = CallingWindow()                 # Monday to Saturday, 09:00 to 20:00 local
CHECK = WindowChecker(WINDOW, ZONES)

INDIANAPOLIS = "+13175550100"            # 317: all Eastern
GARY = "+12192260100"                    # 219-226: an exchange the data puts in Central
NORTHWEST_INDIANA = "+12195550100"       # 219: split between Central and Eastern
PHOENIX = "+16025550100"                 # 602: Arizona, no DST
FLAGSTAFF = "+19285550100"               # 928: Arizona with the Navajo Nation (Mountain, DST)
AU_MOBILE = "+61491570156"
AU_SYDNEY = "+61212345678"
RU_MOBILE = "+79161234567"


def test_indianapolis_is_eastern_only():
    assert ZONES.for_number(INDIANAPOLIS) == {"America/New_York"}


def test_a_split_indiana_area_code_gives_both_zones_even_for_an_exchange_the_data_places():
    assert ZONES.for_number(NORTHWEST_INDIANA) == {"America/New_York", "America/Chicago"}
    assert ZONES.for_number(GARY) == {"America/New_York", "America/Chicago"}


def test_split_indiana_is_called_only_when_both_zones_are_open():
    # Tuesday 2026-07-07 00:30 UTC = 20:30 in New York (closed), 19:30 in Chicago (open).
    evening = datetime(2026, 7, 7, 0, 30, tzinfo=UTC)
    assert not CHECK.may_dial(NORTHWEST_INDIANA, None, evening)
    assert not CHECK.may_dial(INDIANAPOLIS, None, evening)
    # 13:30 UTC = 09:30 New York (open), 08:30 Chicago (closed).
    morning = datetime(2026, 7, 7, 13, 30, tzinfo=UTC)
    assert CHECK.may_dial(INDIANAPOLIS, None, morning)
    assert not CHECK.may_dial(NORTHWEST_INDIANA, None, morning)
    assert CHECK.may_dial(NORTHWEST_INDIANA, None, morning + timedelta(hours=1))


def test_the_leads_own_zone_overrides_the_number():
    evening = datetime(2026, 7, 7, 0, 30, tzinfo=UTC)
    assert CHECK.may_dial(NORTHWEST_INDIANA, "America/Chicago", evening)
    assert ZONES.for_lead(RU_MOBILE, "Europe/Moscow") == {"Europe/Moscow"}
    with pytest.raises(UnknownZone):
        ZONES.for_lead(INDIANAPOLIS, "Mars/Olympus_Mons")


def test_phoenix_keeps_no_dst_and_the_navajo_nation_makes_928_stricter():
    assert ZONES.for_number(PHOENIX) == {"America/Phoenix"}
    assert ZONES.for_number(FLAGSTAFF) == {"America/Phoenix", "America/Denver"}
    # July: Phoenix UTC-7, Denver UTC-6. 02:30 UTC Tuesday = 19:30 Phoenix, 20:30 Denver.
    summer = datetime(2026, 7, 7, 2, 30, tzinfo=UTC)
    assert CHECK.may_dial(PHOENIX, None, summer)
    assert not CHECK.may_dial(FLAGSTAFF, None, summer)
    # January: both UTC-7, so both open at the same instant.
    winter = datetime(2026, 1, 13, 2, 30, tzinfo=UTC)
    assert CHECK.may_dial(PHOENIX, None, winter) and CHECK.may_dial(FLAGSTAFF, None, winter)


def test_an_australian_mobile_may_be_in_perth_or_sydney():
    zones = ZONES.for_number(AU_MOBILE)
    assert {"Australia/Perth", "Australia/Sydney", "Australia/Adelaide"} <= zones
    assert ZONES.for_number(AU_SYDNEY) >= {"Australia/Sydney"} and "Australia/Perth" not in ZONES.for_number(AU_SYDNEY)
    # Wednesday 2026-01-14 23:30 UTC = Thursday 10:30 in Sydney (AEDT), 07:30 in Perth.
    now = datetime(2026, 1, 14, 23, 30, tzinfo=UTC)
    assert CHECK.may_dial(AU_SYDNEY, None, now)
    assert not CHECK.may_dial(AU_MOBILE, None, now)
    assert not CHECK.may_dial(AU_MOBILE, None, now + timedelta(hours=2))   # Christmas Island: 08:30
    assert "Indian/Christmas" in zones                                       # (+61 reaches it, UTC+7)
    assert CHECK.may_dial(AU_MOBILE, None, now + timedelta(hours=3))   # 09:30 there, Perth 10:30


def test_a_russian_mobile_spans_ten_hours_so_an_eleven_hour_window_leaves_one():
    zones = ZONES.for_number(RU_MOBILE)
    assert {"Europe/Moscow", "Asia/Kamchatka", "Europe/Bucharest"} <= zones
    monday = datetime(2026, 3, 2, tzinfo=UTC)
    quarters = [monday + timedelta(minutes=15 * i) for i in range(4 * 24)]
    open_ = [t for t in quarters if CHECK.may_dial(RU_MOBILE, None, t)]
    # Kamchatka (UTC+12) opens at 21:00 UTC the day before and closes at 08:00; the
    # westernmost zone (UTC+2) opens at 07:00: one hour in common.
    assert open_ == [datetime(2026, 3, 2, 7, m, tzinfo=UTC) for m in (0, 15, 30, 45)]
    assert len([t for t in quarters if CHECK.may_dial(RU_MOBILE, "Europe/Moscow", t)]) == 44


def test_a_toll_free_number_is_read_as_its_whole_country():
    assert {"Pacific/Honolulu", "America/St_Johns"} <= ZONES.for_number("+18005550100")


def test_a_number_with_no_country_has_no_zone_and_is_not_dialed():
    with pytest.raises(UnknownZone):
        ZONES.for_number("+999123456")
    with pytest.raises(UnknownZone):
        ZONES.for_number("not a number")
    assert not CHECK.may_dial("+999123456", None, datetime(2026, 7, 7, 15, tzinfo=UTC))


def test_sunday_and_closed_dates_are_closed():
    window = CallingWindow(closed_dates=frozenset({date(2026, 7, 3)}))
    ny = {"America/New_York"}
    assert not window.allowed(ny, datetime(2026, 7, 5, 16, tzinfo=UTC))        # Sunday noon
    assert not window.allowed(ny, datetime(2026, 7, 3, 16, tzinfo=UTC))        # a closed Friday
    assert window.allowed(ny, datetime(2026, 7, 2, 16, tzinfo=UTC))


@pytest.mark.parametrize("hours", [{7: (time(9), time(17))}, {0: (time(17), time(9))}, {0: (time(9),)}])
def test_bad_hours_are_refused(hours):
    with pytest.raises(InvalidWindow):
        CallingWindow(hours=hours)


zone_sets = st.sampled_from([
    INDIANAPOLIS, NORTHWEST_INDIANA, PHOENIX, FLAGSTAFF, AU_MOBILE, AU_SYDNEY, RU_MOBILE,
    "+442079460000", "+33142685300", "+525512345678", "+8613812345678", "+19075550100",
]).map(ZONES.for_number)


@settings(max_examples=200, deadline=None)
@given(start=st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31)),
       steps=st.lists(st.tuples(zone_sets, st.integers(0, 4 * 3600)), min_size=1, max_size=60))
def test_the_cached_checker_agrees_with_the_reference(start, steps):
    """Across DST changes too: times only move forward, as the campaign's clock does."""
    checker = WindowChecker(CallingWindow(hours={d: (time(8), time(21)) for d in range(7)}), ZONES)
    now = start.replace(tzinfo=UTC)
    for zone_set, wait in steps:
        now += timedelta(seconds=wait)
        verdict = checker.check(zone_set, now)
        assert verdict.allowed == checker.window.allowed(zone_set, now)
        assert verdict.until > now


@pytest.mark.parametrize("start", [datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC),
                                   datetime(2026, 4, 4, tzinfo=UTC)], ids=["US spring", "US/EU fall", "AU fall"])
def test_the_checker_holds_across_a_dst_change_minute_by_minute(start):
    checker = WindowChecker(CallingWindow(hours={d: (time(1, 30), time(21)) for d in range(7)}), ZONES)
    sets = [ZONES.for_number(n) for n in (NORTHWEST_INDIANA, FLAGSTAFF, AU_SYDNEY, "+442079460000")]
    for minute in range(0, 3 * 24 * 60, 7):
        now = start + timedelta(minutes=minute)
        for zone_set in sets:
            assert checker.check(zone_set, now).allowed == checker.window.allowed(zone_set, now), (zone_set, now)
