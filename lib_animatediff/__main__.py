"""``python -m lib_animatediff``: the standalone runner (see :mod:`lib_animatediff.runner.cli`)."""

import sys

from lib_animatediff.runner.cli import main

if __name__ == "__main__":
    sys.exit(main())
