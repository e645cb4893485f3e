"""How every ``kolfeed`` command fails: one line on stderr, and one exit-code rule.

Exit codes:
- 0: done;
- 1: the command ran and could not do its work: bad or missing input data, a bad config file or
  ``--set`` value, a corrupt run directory, a store that is down or refuses us, a check that found
  problems. The line says what and where;
- 2: the command line itself is wrong (unknown option, a value of the wrong type or not among the
  choices): click's own usage errors, printed with the usage.
"""

from __future__ import annotations

from typing import NoReturn

import typer

EXIT_FAILED = 1
EXIT_USAGE = 2


def fail(message: object) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with :data:`EXIT_FAILED`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=EXIT_FAILED)
