"""Time helpers: event times as integer microseconds since the Unix epoch (UTC), their
valid range, and their ISO-8601 text. Pure, no dependencies beyond the standard library."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The valid range of an event time (and of a record timestamp used as one), in UTC:
# nothing before the Unix epoch (Kafka timestamps start there) and nothing on the last day
# of year 9999, so any vector renders in the calendar at any UTC offset (up to +-24 h).
MIN_EVENT_US = 0
MAX_EVENT_US = 253_402_214_400_000_000 - 1  # 9999-12-31T00:00:00Z, exclusive
EVENT_RANGE_TEXT = "1970-01-01T00:00:00Z to 9999-12-30T23:59:59.999999Z"


def in_event_range(micros: int) -> bool:
    return MIN_EVENT_US <= micros <= MAX_EVENT_US


def in_calendar(micros: int) -> bool:
    """Whether a datetime can hold this instant (years 1 to 9999 in UTC)."""
    return MIN_MICROS <= micros <= MAX_MICROS


def to_micros(moment: datetime) -> int:
    """Aware or naive (taken as UTC) datetime -> integer microseconds since the epoch."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


MIN_MICROS = to_micros(datetime.min.replace(tzinfo=UTC))
MAX_MICROS = to_micros(datetime.max.replace(tzinfo=UTC))


def from_micros(micros: int) -> datetime:
    """Never raises: values beyond the calendar are clamped to its ends."""
    return EPOCH + timedelta(microseconds=min(max(micros, MIN_MICROS), MAX_MICROS))


_DAY_US = 86_400_000_000
_DAYS: dict[int, str] = {}  # days since the epoch -> "YYYY-MM-DD" (cleared past 100,000)
# Second of the day -> "THH:MM:SS", filled as seconds are met (86,400 at most, 5 MB).
_CLOCK: list[str | None] = [None] * 86_400


def iso_micros(micros: int) -> str:
    """ISO-8601 (UTC, +00:00) of microseconds since the epoch, exactly as
    datetime.isoformat() writes it; never raises. Every lookup and update formats three of
    these: the date and the time of day come from tables, the rest is one format."""
    if not MIN_MICROS <= micros <= MAX_MICROS:
        return from_micros(micros).isoformat()
    days, rest = divmod(micros, _DAY_US)  # floor division: rest >= 0 before 1970 too
    date = _DAYS.get(days)
    if date is None:
        if len(_DAYS) > 100_000:
            _DAYS.clear()
        date = _DAYS[days] = (EPOCH + timedelta(days=days)).date().isoformat()
    second, us = divmod(rest, 1_000_000)
    clock = _CLOCK[second]
    if clock is None:
        hour, left = divmod(second, 3600)
        minute, sec = divmod(left, 60)
        clock = _CLOCK[second] = f"T{hour:02d}:{minute:02d}:{sec:02d}"
    if us:
        return f"{date}{clock}.{us:06d}+00:00"
    return f"{date}{clock}+00:00"


def now_us() -> int:
    """Wall-clock now in microseconds since the epoch (the as_of of a lookup)."""
    return time.time_ns() // 1_000
