"""The lookups' share of a worker's event loop: a decaying sum of computation seconds."""

from __future__ import annotations

import math

from streamapp.http.lookup_share import LookupShare


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lookups_over_their_share_are_refused_until_it_decays() -> None:
    clock = Clock()
    share = LookupShare(0.5, window_s=1.0, clock=clock)
    refused_after = None
    for n in range(100):  # 10 ms lookups back to back: 100 % of the loop
        if share.exhausted():
            refused_after = n
            break
        share.spend(0.010)
        clock.now += 0.010
    assert refused_after is not None and 60 <= refused_after <= 75  # 1 - e^-t > 0.5
    assert share.exhausted()
    clock.now += 1.0  # a second without lookups: e^-1 of it is left
    assert not share.exhausted()


def test_a_steady_load_below_the_share_is_never_refused() -> None:
    clock = Clock()
    share = LookupShare(0.5, window_s=1.0, clock=clock)
    for _ in range(5_000):  # 4 ms of lookups every 10 ms: 40 % of the loop
        share.spend(0.004)
        clock.now += 0.010
        assert not share.exhausted()
    assert math.isclose(share.used, 0.4, rel_tol=0.05)


def test_a_share_of_one_never_refuses() -> None:
    share = LookupShare(1.0)
    share.spend(1_000.0)
    assert not share.exhausted()


def test_a_lone_client_is_admitted_and_only_queued_lookups_give_way() -> None:
    clock = Clock()
    share = LookupShare(0.5, window_s=1.0, clock=clock)
    for _ in range(500):  # one client, back to back: ~100 % of the loop is lookups
        assert share.admits(queued=False, ingest_waiting=True)
        share.spend(0.010)
        clock.now += 0.010
    assert share.exhausted()
    assert not share.admits(queued=True, ingest_waiting=True)  # a second one would queue
    assert share.admits(queued=True, ingest_waiting=False)  # nothing waits to be ingested
    assert share.admits(queued=False, ingest_waiting=True)
