"""Crash injection for the reliability tests, in one place.

`crash_point(name)` kills this process with SIGKILL when the environment variable
CONTEXTSORT_CRASH_AT equals `name`. The runner calls it as "STAGE:before-commit"
(artifacts written, manifest not yet updated) and the progress helper as "STAGE:mid"
(half of a stage's work done). Outside the tests the variable is unset and this is a no-op.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "CONTEXTSORT_CRASH_AT"


def crash_point(name: str) -> None:
    """SIGKILL this process if the tests asked for a crash at `name`."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
