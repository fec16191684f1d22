"""`python -m binaryvae` runs the command-line tool."""

from binaryvae.cli import main

raise SystemExit(main())
