"""The Chalk e-commerce example's query, against a running worker.

    python examples/example_query.py

The worker's address is STREAMAPP_URL, else http://WEB_HOST:WEB_PORT (the worker's own
settings, default http://127.0.0.1:6066), as for every other command. Against a worker
started with STREAMAPP_API_TOKEN, export the same variable here: it is sent as the bearer
token. An error is one line on stderr and exit status 1.

One row per input pair, in input order (the duplicates are deliberate).
"""

from __future__ import annotations

import sys

from streamapp.client import APIError, Client, default_token

USER = "123"
SELLERS = ["456", "457", "458", "458", "456", "461", "460"]
COLUMNS = ("user.id", "seller.id", "favorites_match", "number_of_interactions", "user_seller_score")


def main() -> int:
    try:
        client = Client(token=default_token())
    except ValueError as exc:  # a malformed token; the message never holds its value
        print(f"example_query: {exc}", file=sys.stderr)
        return 1
    try:
        rows = client.query([(USER, seller) for seller in SELLERS])
    except APIError as exc:
        print(f"the worker at {client.url} answered {exc}", file=sys.stderr)
        return 1
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
