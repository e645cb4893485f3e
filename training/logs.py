"""Logging and progress for a run: messages go to stderr and to the run's ``train.log``; stages show a
tqdm bar on stderr. Stdout is left clean because its last line is the run directory path."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recsys.progress import progress as progress_bar

LOGGER_NAME = "kolfeed.train"


def run_logger(log_file: Path | None, quiet: bool = False) -> logging.Logger:
    """A fresh logger writing to ``log_file`` (and stderr unless quiet); old handlers are closed."""
    log = logging.getLogger(LOGGER_NAME)
    for h in list(log.handlers):
        h.close()
        log.removeHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    if log_file is not None:
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        log.addHandler(fh)
    if not quiet:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        log.addHandler(sh)
    return log


def close_logger(log: logging.Logger) -> None:
    for h in list(log.handlers):
        h.close()
        log.removeHandler(h)


class Stages:
    """A progress bar over the pipeline's named stages, with per-stage timings."""

    def __init__(self, names: list[str], log: logging.Logger, disable: bool = False) -> None:
        self.bar = progress_bar(total=len(names), desc="train", unit="stage", enabled=not disable)
        self.log = log
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.bar.set_postfix_str(name)
        self.log.info("stage %s: start", name)
        t0 = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t0
        self.log.info("stage %s: done in %.2fs", name, self.seconds[name])
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
