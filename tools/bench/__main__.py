"""`python -m tools.bench` from the repository root (what `make bench` runs)."""

import sys

from tools.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
