"""`python -m streamapp.schemas` (`make schemas`): write schemas/*.json from the models
(streamapp/tools/schemas.py)."""

from __future__ import annotations

from streamapp.tools.schemas import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
