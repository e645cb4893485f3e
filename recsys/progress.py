"""Progress bars on a terminal only.

Why one helper: a bar redrawn with carriage returns is noise in a log file, CI output or a pipe, so
every long loop asks for its bar here and gets a silent one unless stderr is a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def on_terminal() -> bool:
    """Whether stderr is an interactive terminal (bars are drawn only then)."""
    return sys.stderr.isatty()


def progress(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any) -> tqdm[Any]:
    """A tqdm bar on stderr, silent unless ``enabled`` and stderr is a terminal."""
    bar: tqdm[Any] = tqdm(iterable, file=sys.stderr, disable=not (enabled and on_terminal()), **kwargs)
    return bar
