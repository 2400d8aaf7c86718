"""``python -m sat.report DIR``: see :mod:`sat.report`."""

import sys

from sat.report.cli import main

sys.exit(main())
