"""The worker's entry module: `faust -A streamapp.app worker`.

The faust App is built in streamapp/worker/app.py, which imports none of the modules that
use it. They are imported here, after it, and register their agents, tasks, timers and web
views on it as they load: imports go one way only (no module imports this one).
"""

from __future__ import annotations

from streamapp.worker import agents, readiness, views
from streamapp.worker.app import app

__all__ = ["app"]
# What importing registers (kept referenced so the imports read as used):
REGISTERED = (agents, readiness, views)
