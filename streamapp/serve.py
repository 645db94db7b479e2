"""`python -m streamapp.serve`: a serving process beside a worker (streamapp/serving/)."""

from __future__ import annotations

import sys

from streamapp.serving.main import main

if __name__ == "__main__":
    sys.exit(main())
