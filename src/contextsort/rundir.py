"""The run directory: owned by one run at a time, recognised by a marker, never a place
where user data is deleted.

- An exclusive `fcntl.flock` on `RUN_DIR/.lock` is held for the whole run; a second run
  into the same directory exits 2 naming the pid that holds it. The kernel drops the
  lock when its process dies, so a lock left by a killed run is simply taken over.
- Our manifest carries a marker (`"contextsort_run": 1`); a directory without it is not
  ours and is written into only with `--overwrite`.
- `--overwrite` clears a foreign directory, but never `""`, `.`, `/`, a home directory,
  the current directory or one of its parents, or a directory that holds an input.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

from .atomic import tmp_path, write_json
from .errors import RunDirError

MARKER = "contextsort_run"
LOCK_NAME = ".lock"


def is_our_manifest(manifest: dict) -> bool:
    # runs made before the marker existed carry "contextsort" (the version) and "stages"
    return bool(manifest.get(MARKER)) or ("contextsort" in manifest and "stages" in manifest)


def read_manifest_file(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunDirectory:
    """A locked run directory. Use `with RunDirectory(path, inputs, overwrite) as d:`."""

    def __init__(self, path: str | os.PathLike, inputs: list[str] | tuple = (), overwrite: bool = False):
        if str(path).strip() == "":
            raise RunDirError("the run directory (-o) must not be empty")
        self.path = Path(path)
        self.inputs = [str(p) for p in inputs]
        self.overwrite = overwrite
        self._lock_fh = None

    # -- ownership --------------------------------------------------------------------
    def _contents(self) -> list[Path]:
        """What the directory holds besides what a run killed while creating it leaves: the
        lock file and the temporary name of the first manifest (killed before its rename)."""
        ours = {LOCK_NAME, tmp_path(self.path / "manifest.json").name}
        return [p for p in self.path.iterdir() if p.name not in ours] if self.path.is_dir() else []

    def is_ours(self) -> bool:
        m = read_manifest_file(self.path / "manifest.json")
        return m is not None and is_our_manifest(m)

    def _check_replace_is_safe(self) -> None:
        target = self.path.resolve()
        home = Path.home().resolve()
        cwd = Path.cwd().resolve()
        if target == Path(target.anchor) or target == home or target == cwd or target in cwd.parents:
            raise RunDirError(f"{self.path}: refusing to clear this directory with --overwrite "
                              "(it is the root, a home directory or the current directory or one of its parents)")
        for p in self.inputs:
            ip = Path(p).resolve()
            if ip == target or target in ip.parents:
                raise RunDirError(f"{self.path}: refusing to clear it with --overwrite: it holds the input {p}")

    # -- open / close -----------------------------------------------------------------
    def __enter__(self) -> "RunDirectory":
        d = self.path
        if d.exists() and not d.is_dir():
            raise RunDirError(f"{d}: exists and is not a directory")
        foreign = bool(self._contents()) and not self.is_ours()
        if foreign and not self.overwrite:
            raise RunDirError(f"{d}: directory is not empty and is not a contextsort run "
                              "(use another directory, or --overwrite to clear it)")
        if foreign:
            self._check_replace_is_safe()
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"{d}: cannot create the run directory: {e.strerror}") from None
        self._lock()
        try:
            if bool(self._contents()) and not self.is_ours():  # checked again under the lock
                if not self.overwrite:
                    raise RunDirError(f"{d}: directory is not empty and is not a contextsort run")
                self._check_replace_is_safe()
                for p in self._contents():
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            if not (d / "manifest.json").exists():
                # mark the directory as ours before any stage writes, so a run killed in its
                # first stage resumes without --overwrite
                self.write_manifest({})
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._unlock()

    def _lock(self) -> None:
        fh = open(self.path / LOCK_NAME, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                fh.close()
                raise
            fh.seek(0)
            pid = fh.read().strip() or "unknown"
            fh.close()
            raise RunDirError(f"{self.path} is in use by another contextsort run (pid {pid}); "
                              "wait for it to finish or use another directory") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_fh = fh

    def _unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    # -- files ------------------------------------------------------------------------
    def read_manifest(self) -> dict:
        m = read_manifest_file(self.path / "manifest.json") or {}
        m[MARKER] = 1
        return m

    def write_manifest(self, manifest: dict) -> None:
        manifest[MARKER] = 1
        write_json(self.path / "manifest.json", manifest)

    def publish(self, files: list[str], manifest_without: dict) -> None:
        """A stage's files are committed here; a remote run directory uploads them (remote_run.py)."""

    @property
    def location(self) -> str:
        """Where the run is, as the user named it (a URL for a remote run directory)."""
        return str(self.path)

    def remove(self, rel: str) -> None:
        """Delete a file or folder of the run (missing is fine); never outside the run directory."""
        p = (self.path / rel)
        if self.path.resolve() not in p.resolve().parents:
            return
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
