"""The worker's entry module: `faust -A streamapp.app worker` (the faust App, with its
agents, timers and web views registered, is built in streamapp/worker/)."""

from __future__ import annotations

from streamapp.worker.app import app

__all__ = ["app"]
