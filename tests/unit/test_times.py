"""Times as the API writes them: iso_micros is datetime.isoformat(), also from its cache."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamapp.core.times import MAX_MICROS, MIN_MICROS, from_micros, iso_micros


@given(st.integers(MIN_MICROS - 10**12, MAX_MICROS + 10**12))
def test_iso_micros_is_isoformat_for_every_time(micros: int) -> None:
    want = from_micros(micros).isoformat()
    assert iso_micros(micros) == want
    assert iso_micros(micros) == want  # the second time from the cache


def test_times_within_one_second_share_the_cache_but_not_the_fraction() -> None:
    base = 1_800_000_000 * 1_000_000
    assert iso_micros(base) == "2027-01-15T08:00:00+00:00"
    assert iso_micros(base + 1) == "2027-01-15T08:00:00.000001+00:00"
    assert iso_micros(base + 999_999) == "2027-01-15T08:00:00.999999+00:00"
    assert iso_micros(base - 1) == "2027-01-15T07:59:59.999999+00:00"


def test_the_edges_of_days_and_of_the_calendar() -> None:
    day = 86_400 * 1_000_000
    edges = [MIN_MICROS, MIN_MICROS + 1, MAX_MICROS, MAX_MICROS - 1, -1, 0, 1]
    for midnight in (-day, 0, day, 20_000 * day):  # before and after 1970
        edges += [midnight - 1_000_000, midnight - 1, midnight, midnight + 999_999]
        edges += [midnight + day - 1_000_000, midnight + day - 1]  # 23:59:59 of that day
    for micros in edges:
        assert iso_micros(micros) == from_micros(micros).isoformat(), micros
