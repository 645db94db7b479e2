"""The Chalk e-commerce example's query, against a running worker.

    python examples/example_query.py

The worker's address is STREAMAPP_URL, else http://WEB_HOST:WEB_PORT (the worker's own
settings, default http://127.0.0.1:6066), as for every other command.

One row per input pair, in input order (the duplicates are deliberate).
"""

from __future__ import annotations

import sys

from streamapp.client import Client

USER = "123"
SELLERS = ["456", "457", "458", "458", "456", "461", "460"]
COLUMNS = ("user.id", "seller.id", "favorites_match", "number_of_interactions", "user_seller_score")


def main() -> int:
    client = Client()
    try:
        rows = client.query([(USER, seller) for seller in SELLERS])
    except OSError as exc:
        print(f"cannot reach the worker at {client.url}: {exc}", file=sys.stderr)
        return 1
    print("  ".join(f"{c:<22}" for c in COLUMNS).rstrip())
    print("  ".join("-" * 22 for _ in COLUMNS))
    for row in rows:
        cells = (
            row["user_id"],
            row["seller_id"],
            str(row["favorites_match"]).lower(),
            str(row["number_of_interactions"]),
            f"{row['user_seller_score']:.4f}",
        )
        print("  ".join(f"{c:<22}" for c in cells).rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
