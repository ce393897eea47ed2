"""Errors a user can cause. The CLI prints them as one line and exits 2; anything else is a bug."""

from __future__ import annotations


class ContextsortError(Exception):
    """Base of every error caused by the input, the options, the run directory or the environment."""


class ConfigError(ContextsortError, ValueError):
    """An option has a value the pipeline cannot use; the message names the option as the user wrote it."""


class InputError(ContextsortError):
    """Bad input that stops the run (strict mode, or nothing usable); names file, line and field."""


class RunDirError(ContextsortError):
    """The run directory cannot be used: not ours, locked by another run, or unsafe to replace."""


class DependencyMissing(ContextsortError):
    """An optional package or a model is not installed; the message says how to get it."""


class ResourceError(ContextsortError):
    """The machine ran out of something (disk space); rerunning resumes once it is freed."""


class RunError(ContextsortError):
    """The pipeline found an inconsistency it refuses to write (for example counts that do not add up)."""
