"""Whether this worker serves lookups, and a log line whenever that changes."""

from __future__ import annotations

import logging

from streamapp import tables
from streamapp.app import app

log = logging.getLogger("streamapp")
_last_state: dict[str, bool | None] = {"ready": None}


def ready() -> bool:
    """True once table recovery has finished, the profile catalogs have caught up, and no
    rebalance is under way."""
    recovery = app.tables.recovery
    return (
        recovery.completed.is_set()
        and not app.in_recovery
        and not app.rebalancing
        and all(catalog.caught_up.is_set() for catalog in tables.catalogs)
    )


@app.timer(interval=0.5)
async def log_state_changes() -> None:
    now = ready()
    if now != _last_state["ready"]:
        if now:
            log.info("streamapp: ready, serving lookups")
        else:
            log.info("streamapp: recovering state (rebalance or table restore); lookups answer 503")
        _last_state["ready"] = now
