"""Logging and progress: one logger ("contextsort") and one progress-bar helper for every long loop.

The CLI sets the level (-q: warnings only, default: stage log + bars, -v: debug). Bars
go to stderr and only show when the logger would print INFO messages.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

from .faults import crash_point

log = logging.getLogger("contextsort")


def setup_logging(verbosity: int = 0) -> None:
    """verbosity -1: quiet, 0: normal, 1: debug. Idempotent (one handler)."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    log.setLevel(level)
    if not any(getattr(h, "_contextsort", False) for h in log.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._contextsort = True  # type: ignore[attr-defined]
        log.addHandler(h)
    log.propagate = False


class Progress:
    """A tqdm bar (when INFO is on) that also fires the crash hook "DESC:mid" half-way.

    Use as a context manager; `update(n)` after each piece of work. Unknown totals fire
    the hook after 20 units.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "doc"):
        tqdm = tqdm_class()
        self.total = total
        self.desc = desc
        self.done = 0
        self._mid_fired = False
        self.bar = tqdm(total=total, desc=desc, unit=unit, disable=not log.isEnabledFor(logging.INFO),
                        dynamic_ncols=True, leave=False, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        self.bar.update(n)
        if not self._mid_fired and self.done >= (self.total / 2 if self.total else 20):
            self._mid_fired = True
            crash_point(f"{self.desc}:mid")

    def skip_to(self, done: int) -> None:
        """Start the bar at `done` (resumed work), so rates count only this run's work."""
        self.done = done
        self.bar.reset(total=self.total)
        self.bar.n = self.bar.last_print_n = done
        self.bar.refresh()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


def tqdm_class():
    """tqdm's notebook bar in Jupyter, its console bar elsewhere: `tqdm.auto` without its asyncio
    subclass (importing asyncio for it took 30-60 ms of every run's start; no bar here is async)."""
    import warnings

    from tqdm import TqdmExperimentalWarning

    with warnings.catch_warnings():  # as tqdm.auto does: autonotebook warns in notebooks
        warnings.simplefilter("ignore", category=TqdmExperimentalWarning)
        from tqdm.autonotebook import tqdm
    return tqdm


def progress(total: int | None, desc: str, unit: str = "doc") -> Progress:
    return Progress(total, desc, unit)


ProgressFn = Callable[[int], None]
