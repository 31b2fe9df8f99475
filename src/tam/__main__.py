"""`python -m tam ...` (also what `torchrun -m tam train ...` runs)."""

import sys

from tam.cli import main

sys.exit(main())
