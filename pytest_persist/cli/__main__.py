"""``python -m pytest_persist.cli``: the same as the ``pytest-persist`` command."""

import sys

from . import main

sys.exit(main())
