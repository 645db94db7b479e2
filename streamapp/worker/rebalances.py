"""Rebalances as an operator sees them: how many, and how long each paused this worker.

faust's sensor hooks (faust.Sensor, a public API) mark a rebalance's start and the moment
this worker's assignment is handled again; with eager rebalancing (aiokafka has no other)
every member pauses ingest and lookups for that long.
"""

from __future__ import annotations

import time
from typing import Any

from faust import Sensor

from streamapp import metrics


class RebalanceSensor(Sensor):
    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        metrics.rebalances.inc()
        return {"started": time.monotonic()}

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        started = state.get("started") if state else None
        if started is not None:
            metrics.rebalance_seconds.observe(time.monotonic() - started)


def install(app: Any) -> None:
    app.sensors.add(RebalanceSensor())
