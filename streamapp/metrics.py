"""Counters the worker keeps about itself (served by /metrics, logged periodically)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    counted: int = 0
    duplicates: int = 0
    updates: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)


stats = Stats()
