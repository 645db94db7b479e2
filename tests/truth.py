"""An independent, brute-force model of the contract's semantics, for tests only.

Written from contract.md, not from streamapp's code: it keeps every interaction and
recomputes each feature from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

KINDS = ("LIKE", "VIEW", "PURCHASE", "OTHER")
DEFAULT_WEIGHTS = {"PURCHASE": 5.0, "LIKE": 3.0, "VIEW": 1.0, "OTHER": 0.5}
DAY_S = 86_400.0


def kind(text: str) -> str:
    return text if text in ("LIKE", "VIEW", "PURCHASE") else "OTHER"


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _escaped(entity_id: str) -> str:
    """README: inside each id of a pair id, backslash is doubled and '-' is backslash-escaped."""
    out = []
    for char in entity_id:
        out.append("\\" + char if char in "\\-" else char)
    return "".join(out)


@dataclass
class Truth:
    """Interactions per pair (already deduplicated) and the current profiles."""

    half_life_s: float = 7 * DAY_S
    favorites_bonus: float = 1.0
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    pairs: dict[tuple[str, str], list[tuple[str, datetime]]] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)
    favorites: dict[str, set[str]] = field(default_factory=dict)
    categories: dict[str, set[str]] = field(default_factory=dict)

    def interact(self, iid: str, user: str, seller: str, kind_text: str, on: datetime) -> bool:
        if iid in self.seen_ids:  # every test data set lies inside the dedupe horizon
            return False
        self.seen_ids.add(iid)
        self.pairs.setdefault((user, seller), []).append((kind(kind_text), on))
        return True

    def vector(self, user: str, seller: str, as_of: datetime) -> dict:
        events = self.pairs.get((user, seller), [])
        fav = self.favorites.get(user, set())
        cats = self.categories.get(seller, set())
        overlap = len(fav & cats)
        union = len(fav | cats)
        score = sum(
            self.weights[k] * 2 ** (-(as_of - on).total_seconds() / self.half_life_s)
            for k, on in events
        )
        if overlap:
            score += self.favorites_bonus

        def window(days: float) -> int:
            return sum(1 for _, on in events if 0 <= (as_of - on).total_seconds() < days * DAY_S)

        times = [on for _, on in events]
        return {
            "id": f"{_escaped(user)}-{_escaped(seller)}",
            "user_id": user,
            "seller_id": seller,
            "number_of_interactions": len(events),
            "interactions_by_kind": {k: sum(1 for e, _ in events if e == k) for k in KINDS},
            "interactions_1d": window(1),
            "interactions_7d": window(7),
            "interactions_30d": window(30),
            "first_interaction_at": min(times) if times else None,
            "last_interaction_at": max(times) if times else None,
            "favorites_match": overlap > 0,
            "category_overlap": overlap,
            "category_jaccard": overlap / union if union else 0.0,
            "user_seller_score": score,
        }


def assert_vector_equal(got: dict, want: dict) -> None:
    """Field by field; times compared as instants, floats to 1e-6 relative."""
    import math

    assert set(got) >= set(want) | {"as_of"}, f"missing fields: {set(want) - set(got)}"
    for name, expected in want.items():
        actual = got[name]
        if name.endswith("_at"):
            actual = parse_time(actual) if actual is not None else None
            assert actual == expected, f"{got['id']} {name}: {actual} != {expected}"
        elif isinstance(expected, float):
            assert math.isclose(actual, expected, rel_tol=1e-6, abs_tol=1e-9), (
                f"{got['id']} {name}: {actual} != {expected}"
            )
        else:
            assert actual == expected, f"{got['id']} {name}: {actual!r} != {expected!r}"
