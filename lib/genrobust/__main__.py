"""`python -m genrobust`, the same command.
"""
import sys

from .cli import main

sys.exit(main())
