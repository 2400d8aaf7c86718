"""``python -m sat.report DIR``: see :mod:`sat.report`."""

import sys

from sat.report.cli import main

if __name__ == "__main__":  # importing this module (a stored _target_ naming it) runs nothing
    sys.exit(main())
