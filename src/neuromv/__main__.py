"""``python -m neuromv``: the same as the ``neuromv`` command."""

import sys

from .cli import main

sys.exit(main())
