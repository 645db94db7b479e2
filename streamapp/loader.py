"""`python -m streamapp.loader` (also the `streamapp-load` command): bulk-load JSON Lines files
into the topics (streamapp/tools/loader.py)."""

from __future__ import annotations

from streamapp.tools.loader import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
