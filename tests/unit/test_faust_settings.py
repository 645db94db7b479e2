"""The shared faust speed settings, the lean monitor, and the benchmark's update counting."""

from __future__ import annotations

import faust
import pytest

from bench.data import covered_by
from bench.floor import parse_setting
from streamapp.core.config import Settings
from streamapp.worker.faust_settings import LeanMonitor, speed_options


def test_speed_options_are_faust_settings() -> None:
    options = speed_options(Settings(partitions=4))
    app = faust.App("speed-options-test", **options)
    assert app.conf.topic_partitions == 4
    assert app.conf.store.scheme == "rocksdb"
    assert app.conf.web_tables_enabled is False
    for name, value in options.items():
        if name not in ("monitor", "store"):
            assert getattr(app.conf, name) == value, name


def test_lean_monitor_keeps_what_the_consumer_reads() -> None:
    monitor = LeanMonitor()
    app = faust.App("lean-monitor-test", monitor=monitor)
    assert app.monitor is monitor
    tp = faust.types.TP("t", 3)
    assert monitor.on_stream_event_in(tp, 7, None, None) is None  # type: ignore[arg-type]
    # The consumer's "stream is not processing" check reads this on a timer.
    assert tp in monitor.stream_inbound_time
    monitor.on_message_in(tp, 7, None)
    assert monitor.messages_received_total == 0


@pytest.mark.parametrize(
    ("value", "covered"),
    [
        (b'{"id":"u1-s1","interaction_id":"i1"}', 1),  # STREAMAPP_UPDATES=each
        (b'{"id":"u1-s1","interactions_covered":17,"as_of":"x"}', 17),  # coalesced
        (b'{"interactions_covered": 3}', 3),
        (b'{"a": 1, "interactions_covered" : 4}', 4),
        (None, 0),
    ],
)
def test_covered_by(value: bytes | None, covered: int) -> None:
    assert covered_by(value) == covered


def test_parse_setting() -> None:
    assert parse_setting("broker_max_poll_records=500") == ("broker_max_poll_records", 500)
    assert parse_setting("stream_wait_empty=false") == ("stream_wait_empty", False)
    assert parse_setting("monitor=lean") == ("monitor", "lean")
    with pytest.raises(ValueError):
        parse_setting("no-value")


def test_tune_gc_freezes_what_exists_and_collects_the_young_generation_less_often() -> None:
    import gc

    from streamapp.runtime import GC_YOUNG_THRESHOLD, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_benchmark_reads_batch_sizes_and_splits_worker_samples(tmp_path) -> None:
    from bench.freshness import batch_sizes
    from bench.profile import split

    text = (
        "# TYPE streamapp_batch_events histogram\n"
        'streamapp_batch_events_bucket{le="1.0",stream="interactions"} 0.0\n'
        'streamapp_batch_events_count{stream="interactions"} 4.0\n'
        'streamapp_batch_events_sum{stream="interactions"} 3000.0\n'
        'streamapp_batch_events_count{stream="users"} 2.0\n'
        'streamapp_batch_events_sum{stream="users"} 3.0\n'
    )
    assert batch_sizes(text) == {
        "interactions": {"batches": 4, "mean_events": 750.0},
        "users": {"batches": 2, "mean_events": 1.5},
    }
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "main (m.py:1);Recovery._slurp_changelogs (faust/tables/recovery.py:800) 3\n"
        "main (m.py:1);count_batch (streamapp/core/counting.py:70) 5\n"
        "main (m.py:1);Consumer._drain_messages (faust/transport/consumer.py:1) 2\n"
    )
    assert split(raw) == {"standby": 30.0, "own_partitions": 50.0, "rest": 20.0}


def test_the_benchmark_tells_an_idle_event_loop_from_a_busy_one() -> None:
    """bench.common.MainThreadIdle reads the main thread's schedstat (this test's own):
    asleep, every window is idle; spinning, the thread is on a CPU; only the windows inside
    `between` (the producer's sending) count (faust_fixes 15. was found this way)."""
    import os
    import time

    from bench.common import MainThreadIdle

    asleep = MainThreadIdle(os.getpid(), longest=5, every=0.1).start()
    time.sleep(0.8)
    idle = asleep.stop()
    assert idle["windows"] >= 3 and idle["idle_windows"] == idle["windows"]

    spinning = MainThreadIdle(os.getpid(), longest=5, every=0.1).start()
    started = time.monotonic()
    until = started + 0.8
    while time.monotonic() < until:
        pass
    busy = spinning.stop()
    assert busy["windows"] >= 3 and busy["idle_windows"] < busy["windows"]
    assert busy["main_thread_pct"] > 30 and busy["process_pct"] > 30
    assert busy["runqueue_pct"] is not None

    asleep = MainThreadIdle(os.getpid(), longest=5, every=0.1).start()
    time.sleep(0.8)
    cut = time.monotonic()
    assert asleep.stop(between=(cut, cut + 10))["windows"] == 0
