"""The live page at `/` (static/index.html): counters, a pair lookup showing every feature,
the user's top sellers; no build step, no CDN. The worker serves it; a serving process
passes `/` on to its worker."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"


def index_html() -> str:
    """The page, read from the package at each request (so an edited file is served)."""
    return (STATIC / "index.html").read_text()
