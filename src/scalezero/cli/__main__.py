"""`python -m scalezero.cli`."""

import sys

from scalezero.cli import main

sys.exit(main())
