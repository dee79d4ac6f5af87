"""``python -m sksparseft``: the command line (see :mod:`sksparseft.cli`)."""

import sys

from .cli import main

sys.exit(main())
