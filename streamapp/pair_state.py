"""The state of one user-seller pair, and how one interaction changes it.

Everything a lookup needs is in here, in a form that is cheap to update per event and
exact at query time:
- counts per kind, first/last event time;
- the event times of the last `WINDOW_RETENTION_US` (sorted), so 1d/7d/30d windows are
  exact at any as_of;
- per-kind decay accumulators relative to a reference time, so the score at any as_of
  is one multiplication (2^-(as_of-on)/h = 2^-(as_of-ref)/h * 2^(on-ref)/h);
- the ids seen within the dedupe horizon, and the source offset last applied, so a
  redelivered or replayed event is recognised (idempotent updates, see docs/exactness.md).
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass, field
from typing import Any

from streamapp.models import KIND_INDEX, RoutedInteraction

US = 1_000_000
DAY_US = 86_400 * US
WINDOWS_US = {"1d": DAY_US, "7d": 7 * DAY_US, "30d": 30 * DAY_US}
WINDOW_RETENTION_US = max(WINDOWS_US.values())
# Rebase the decay reference before 2^((on-ref)/h) leaves float range comfortably.
REBASE_HALF_LIVES = 256.0


# How an interaction reached the pair: re-keyed through the app's own topic, or read
# directly from `interactions` when its producer already keyed it by user id.
ROUTED, DIRECT = 0, 1


class Outcome(enum.Enum):
    COUNTED = "counted"
    DUPLICATE = "duplicate"  # same interaction id within the dedupe horizon
    REPLAY = "replay"  # a source offset already applied (redelivery after a crash)


@dataclass(slots=True)
class PairState:
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    first_us: int | None = None
    last_us: int | None = None
    ref_us: int = 0
    acc: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    times: list[int] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    # Last source offset applied, per path: [re-keyed topic, interactions topic directly].
    offsets: list[int] = field(default_factory=lambda: [-1, -1])

    @property
    def total(self) -> int:
        return sum(self.counts)

    def to_json(self) -> dict[str, Any]:
        return {
            "c": self.counts,
            "f": self.first_us,
            "l": self.last_us,
            "r": self.ref_us,
            "a": self.acc,
            "t": self.times,
            "s": self.seen,
            "o": self.offsets,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PairState:
        return cls(
            counts=list(data["c"]),
            first_us=data["f"],
            last_us=data["l"],
            ref_us=data["r"],
            acc=list(data["a"]),
            times=list(data["t"]),
            seen=dict(data["s"]),
            offsets=list(data["o"]),
        )

    def window_count(self, as_of_us: int, window_us: int) -> int:
        """Interactions with event time in (as_of - window, as_of]."""
        return bisect.bisect_right(self.times, as_of_us) - bisect.bisect_right(
            self.times, as_of_us - window_us
        )


def apply(
    state: PairState,
    event: RoutedInteraction,
    offset: int,
    now_us: int,
    half_life_s: float,
    dedupe_horizon_s: float,
    path: int = ROUTED,
) -> Outcome:
    """Count `event` (read at `offset` of the topic `path` names) into `state`, at most once."""
    if offset <= state.offsets[path]:
        return Outcome.REPLAY
    state.offsets[path] = offset

    horizon_us = int(dedupe_horizon_s * US)
    if state.seen:
        oldest = event.seen_us - horizon_us
        if any(t < oldest for t in state.seen.values()):
            state.seen = {i: t for i, t in state.seen.items() if t >= oldest}
        if event.id in state.seen:
            return Outcome.DUPLICATE
    if horizon_us > 0:
        state.seen[event.id] = event.seen_us

    on = event.on_us
    state.counts[KIND_INDEX[event.kind.value]] += 1
    if state.first_us is None or on < state.first_us:
        state.first_us = on
    if state.last_us is None or on > state.last_us:
        state.last_us = on

    half_life_us = half_life_s * US
    if state.total == 1:
        state.ref_us = on
    elif (on - state.ref_us) / half_life_us > REBASE_HALF_LIVES:
        shift = 2.0 ** ((state.ref_us - on) / half_life_us)
        state.acc = [a * shift for a in state.acc]
        state.ref_us = on
    exponent = max((on - state.ref_us) / half_life_us, -1074.0)
    state.acc[KIND_INDEX[event.kind.value]] += 2.0**exponent

    # Event times older than the widest window (as of now) can never be counted again.
    horizon = now_us - WINDOW_RETENTION_US
    if on > horizon:
        bisect.insort(state.times, on)
    if state.times and state.times[0] <= horizon:
        del state.times[: bisect.bisect_right(state.times, horizon)]
    return Outcome.COUNTED
