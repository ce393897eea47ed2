"""A run directory at an fsspec URL (s3://, gs://, az://, file://...): `contextsort run in.jsonl -o s3://bucket/runs/x`.

The stages run in a local working copy (`--cache-dir`, default
``$XDG_CACHE_HOME/contextsort/runs/<hash of the URL>``), locked like any run directory.
The URL holds the truth:

- On start, a URL that holds one of our manifests seeds the working copy: when the copy's
  manifest is not byte for byte the URL's, the copy is emptied and the manifest and every
  file a stage recorded are downloaded. So a run resumes on another machine, or after its
  cache was lost, with its finished stages reused.
- When a stage commits, the URL's manifest first loses that stage's record, then the
  stage's files are uploaded (a folder replaces the old one), then the new manifest. A
  crash at any point leaves a manifest that names only files already uploaded, so the
  stages it records are reused and the rest run again.
- A URL that holds files but none of our manifests is written into only with
  `--overwrite`, which deletes what is there; never a whole bucket, and never a prefix
  that holds an input.

Locking is local only (an flock on the working copy): two machines must not write the
same URL at the same time. On a multi-node Ray cluster the working copy must be on
storage every node can write (`--cache-dir`), as for a local run directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .errors import RunDirError
from .progress import log
from .remote import is_url, open_filesystem
from .rundir import LOCK_NAME, RunDirectory, is_our_manifest

MANIFEST = "manifest.json"


def default_cache_dir(url: str) -> Path:
    """The working copy of a run URL: $XDG_CACHE_HOME (or ~/.cache)/contextsort/runs/<hash of the URL>."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "contextsort" / "runs" / hashlib.sha256(url.encode()).hexdigest()[:16]


def is_remote_run(path: str | os.PathLike) -> bool:
    """Whether a run directory is given as a URL that is not a plain local path (file:// is local)."""
    return is_url(path) and not str(path).startswith("file://")


class RemoteRunDirectory(RunDirectory):
    """A run directory at `url`, worked on in the local `cache_dir` (module doc)."""

    def __init__(self, url: str, inputs: list[str] | tuple = (), overwrite: bool = False,
                 cache_dir: str | os.PathLike | None = None):
        self.url = str(url).rstrip("/")
        super().__init__(cache_dir or default_cache_dir(self.url), inputs, overwrite)
        self.fs, self.root = open_filesystem(self.url)
        self.root = self.root.rstrip("/")
        self.synced = False  # nothing is uploaded before the working copy is the URL's

    # -- the remote side ----------------------------------------------------------------
    def remote(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def remote_files(self) -> list[str]:
        """Every object under the run URL, relative to it."""
        self.fs.invalidate_cache()
        if not self.fs.exists(self.root):
            return []
        if not self.fs.isdir(self.root):
            raise RunDirError(f"{self.url}: exists and is not a directory")
        return sorted(p[len(self.root) + 1:] for p in self.fs.find(self.root) if p.startswith(self.root + "/"))

    def remote_manifest(self) -> bytes | None:
        try:
            return self.fs.cat_file(self.remote(MANIFEST))
        except FileNotFoundError:
            return None

    def check_clear_is_safe(self) -> None:
        """--overwrite never clears a whole bucket or a prefix that holds an input."""
        if "/" not in self.root.strip("/"):
            raise RunDirError(f"{self.url}: refusing to clear a whole bucket with --overwrite: use a prefix (s3://bucket/runs/x)")
        for p in self.inputs:
            inside = is_remote_run(p) and (open_filesystem(p)[1].rstrip("/") + "/").startswith(self.root + "/")
            if inside:
                raise RunDirError(f"{self.url}: refusing to clear it with --overwrite: it holds the input {p}")

    # -- open ---------------------------------------------------------------------------
    def __enter__(self) -> "RemoteRunDirectory":
        files = self.remote_files()
        raw = self.remote_manifest()
        ours = raw is not None and is_our_manifest(parse(raw))
        if files and not ours:
            if not self.overwrite:
                raise RunDirError(f"{self.url}: holds files and is not a contextsort run "
                                  "(use another URL, or --overwrite to delete what is there)")
            self.check_clear_is_safe()
        super().__enter__()
        try:
            if files and not ours:
                log.info(f"{self.url}: --overwrite: deleting {len(files)} files that are not a contextsort run")
                self.fs.rm([self.remote(f) for f in files])
                raw = None
            self.seed(raw, files)
            self.synced = True
            self.upload([MANIFEST])  # marks the URL as ours before any stage writes
        except (FileNotFoundError, PermissionError) as e:
            self._unlock()
            raise RunDirError(f"{self.url}: cannot use it as the run directory: {e}") from None
        except BaseException:
            self._unlock()
            raise
        return self

    def seed(self, raw: bytes | None, files: list[str]) -> None:
        """Make the working copy what the URL holds (nothing to do when the manifests are the same)."""
        local = self.path / MANIFEST
        if raw is not None and local.is_file() and local.read_bytes() == raw:
            log.info(f"{self.url}: the working copy {self.path} is up to date")
            return
        for p in self.path.iterdir():
            if p.name != LOCK_NAME:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        if raw is None:
            self.write_local_manifest({})
            return
        recorded = [f for rec in parse(raw).get("stages", {}).values() for f in rec.get("files", [])]
        want = [f for f in files if f != MANIFEST and any(f == r or f.startswith(r.rstrip("/") + "/") for r in recorded)]
        log.info(f"{self.url}: downloading {len(want)} files of the finished stages into {self.path}")
        for f in want:
            (self.path / f).parent.mkdir(parents=True, exist_ok=True)
        if want:
            self.fs.get([self.remote(f) for f in want], [str(self.path / f) for f in want])
        tmp = local.with_name(MANIFEST + ".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, local)  # last: the copy is complete once its manifest is the URL's

    # -- files --------------------------------------------------------------------------
    def upload(self, rels: list[str]) -> None:
        """Local files or folders of the run to the URL; a folder replaces the remote one."""
        lpaths, rpaths = [], []
        for rel in rels:
            p = self.path / rel
            if p.is_dir():
                self.remove_remote(rel)
                for f in sorted(x for x in p.rglob("*") if x.is_file()):
                    lpaths.append(str(f))
                    rpaths.append(self.remote(f.relative_to(self.path).as_posix()))
            elif p.is_file():
                lpaths.append(str(p))
                rpaths.append(self.remote(rel))
        if lpaths:
            self.fs.put(lpaths, rpaths)

    def remove_remote(self, rel: str) -> None:
        self.fs.invalidate_cache()
        try:
            self.fs.rm(self.remote(rel), recursive=True)
        except FileNotFoundError:
            pass

    def write_local_manifest(self, manifest: dict) -> None:
        super().write_manifest(manifest)

    def write_manifest(self, manifest: dict) -> None:
        super().write_manifest(manifest)
        if self.synced:
            self.upload([MANIFEST])

    def publish(self, files: list[str], manifest_without: dict) -> None:
        """A stage's files to the URL, after a manifest that no longer records the stage (module doc)."""
        self.write_manifest(manifest_without)
        self.upload(files)

    def remove(self, rel: str) -> None:
        super().remove(rel)
        if self.synced:
            self.remove_remote(rel)

    @property
    def location(self) -> str:
        return self.url


def parse(raw: bytes) -> dict:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def open_run_directory(run_dir: str | os.PathLike, inputs: list[str] | tuple = (), overwrite: bool = False,
                       cache_dir: str | os.PathLike | None = None) -> RunDirectory:
    """The run directory for a local path, a file:// URL, or a remote URL (worked on in `cache_dir`)."""
    if is_remote_run(run_dir):
        return RemoteRunDirectory(str(run_dir), inputs, overwrite, cache_dir)
    from .remote import local_path

    return RunDirectory(local_path(run_dir), inputs, overwrite)
