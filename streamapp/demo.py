"""`python -m streamapp.demo` (`make demo`): demo data at RATE/s (streamapp/tools/demo.py)."""

from __future__ import annotations

from streamapp.tools.demo import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
