"""``python -m bench``: see bench/README.md and ``python -m bench --help``."""

import sys

from bench._harness import main

try:
    sys.exit(main())
except KeyboardInterrupt:
    print("\ninterrupted; every benchmark process stopped", file=sys.stderr)
    sys.exit(130)
