"""``python -m pimo`` runs the command line."""

import sys

from pimo.cli import main

sys.exit(main())
