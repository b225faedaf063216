"""``python -m orca_db.testing.simulator``: see :mod:`.cli`."""

import sys

from .cli import main

sys.exit(main())
