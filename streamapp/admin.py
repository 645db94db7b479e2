"""`python -m streamapp.admin delete-topics TOPIC...`: broker chores
(streamapp/tools/admin.py)."""

from __future__ import annotations

from streamapp.tools.admin import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
