"""Entry point of `python -m hypervsim`."""

from hypervsim.cli import main

raise SystemExit(main())
