"""``python -m kolfeed``: the same command line as ``kolfeed``."""

from kolfeed.cli import main

main()
