"""The Grafana dashboard (docs/grafana/streamapp.json) only asks for series the worker or a
serving process exports: a renamed or dropped metric breaks a panel silently, so it breaks
this test."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import streamapp.metrics  # noqa: F401  (registers every metric)
from streamapp.serving.metrics import REGISTRY as SERVE_REGISTRY

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "streamapp.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> set[str]:
    names = set()
    for metric in [*REGISTRY.collect(), *SERVE_REGISTRY.collect()]:
        for suffix in SUFFIXES.get(metric.type, ("",)):
            names.add(metric.name + suffix)
    return names


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_every_query_names_a_series_the_worker_exports() -> None:
    available = exported()
    asked = {name for expr in queries() for name in re.findall(r"\bstreamapp_\w+", expr)}
    assert asked, "no streamapp series in the dashboard"
    assert sorted(asked - available) == []


def test_the_operator_metrics_have_a_panel() -> None:
    asked = " ".join(queries())
    for series in (
        "streamapp_rebalances_total",
        "streamapp_rebalance_duration_seconds_bucket",
        'step="record_to_confirmed"',
        "streamapp_commit_lag",
        "streamapp_http_request_duration_seconds_bucket",
        "streamapp_serve_catch_up_lag_seconds",
    ):
        assert series in asked


def test_a_rebalance_is_counted_with_its_pause() -> None:
    from streamapp import metrics
    from streamapp.worker.rebalances import RebalanceSensor

    sensor = RebalanceSensor()
    before = metrics.value(metrics.rebalances)
    count = REGISTRY.get_sample_value("streamapp_rebalance_duration_seconds_count") or 0.0
    state = sensor.on_rebalance_start(app=None)
    sensor.on_rebalance_end(app=None, state=state)
    assert metrics.value(metrics.rebalances) == before + 1
    assert REGISTRY.get_sample_value("streamapp_rebalance_duration_seconds_count") == count + 1


def test_a_series_not_given_again_is_removed() -> None:
    from streamapp import metrics

    series = metrics.SeriesSet(metrics.restore_remaining)
    series.replace({("t-changelog", "0"): 5, ("t-changelog", "1"): 7})
    assert (
        REGISTRY.get_sample_value(
            "streamapp_restore_records_remaining", {"topic": "t-changelog", "partition": "1"}
        )
        == 7
    )
    series.replace({("t-changelog", "0"): 2})
    assert (
        REGISTRY.get_sample_value(
            "streamapp_restore_records_remaining", {"topic": "t-changelog", "partition": "0"}
        )
        == 2
    )
    assert (
        REGISTRY.get_sample_value(
            "streamapp_restore_records_remaining", {"topic": "t-changelog", "partition": "1"}
        )
        is None
    )
    series.replace({})
    assert not [
        s
        for m in REGISTRY.collect()
        if m.name == "streamapp_restore_records_remaining"
        for s in m.samples
    ]
