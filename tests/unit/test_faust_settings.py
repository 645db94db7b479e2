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
