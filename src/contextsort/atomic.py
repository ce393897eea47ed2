"""The one way contextsort writes a file: to a temporary name, flushed, fsynced, renamed.

A crash (even kill -9) leaves either the old file or the new one, never half of one; a
leftover `*.tmp` is removed by the next run. A full disk becomes a ResourceError that
says how to resume.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

import numpy as np

from .errors import ResourceError

TMP_SUFFIX = ".tmp"


def tmp_path(path: str | os.PathLike) -> Path:
    """The temporary name `path` is written under before its rename."""
    path = Path(path)
    return path.with_name(path.name + TMP_SUFFIX)


def disk_full(path: str | os.PathLike) -> ResourceError:
    return ResourceError(f"no space left on the device while writing {path}: free some space and rerun "
                         "the same command; finished stages are kept and the run resumes")


@contextmanager
def removed_on_failure(path: str | os.PathLike) -> Iterator[Path]:
    """The temporary name of `path` for the block to write; removed when the block fails (a
    full disk raised as the clear `disk_full` error)."""
    tmp = tmp_path(path)
    try:
        yield tmp
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise disk_full(path) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces `path`, on failure it is removed."""
    path = Path(path)
    with removed_on_failure(path) as tmp:
        with open(tmp, mode, encoding=encoding if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def fsync_file(path: str | os.PathLike) -> None:
    """Get a closed file's bytes onto the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Fsync a file written elsewhere (a memory map, a writer library) and rename it to `path`."""
    fsync_file(tmp)
    os.replace(tmp, path)


def write_unsynced(path: str | os.PathLike, write: Callable[[IO], object]) -> Path:
    """Write `path`'s temporary file with `write(fh)` (binary), not yet fsynced nor renamed: for `commit_many`."""
    with removed_on_failure(path) as tmp:
        with open(tmp, "wb") as fh:
            write(fh)
    return tmp


def commit_many(pairs: list[tuple[str | os.PathLike, str | os.PathLike]]) -> None:
    """`commit` each (tmp, path): every file fsynced (all at once, each in a thread, so the
    file system can take them in one journal commit rather than one after another), then
    renamed in the given order. A file is never renamed before it is on the disk."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        if len(pairs) > 1:
            with ThreadPoolExecutor(len(pairs)) as pool:
                list(pool.map(fsync_file, [tmp for tmp, _ in pairs]))
        else:
            for tmp, _ in pairs:
                fsync_file(tmp)
    except OSError as e:
        for tmp, _ in pairs:
            Path(tmp).unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise disk_full(pairs[0][1]) from None
        raise
    for tmp, path in pairs:
        os.replace(tmp, path)


class Writeback:
    """Gets the bytes of files still being written onto the disk while the writing goes on.

    After every `every` bytes written, the files are flushed and a thread fdatasyncs them,
    so the fsync of `commit` at the end finds little left and the disk's work overlaps the
    writer's own. Only when the writes go: a file becomes durable, and visible under its
    name, by `commit` as before. One fdatasync runs at a time; a call that finds one
    running does nothing (the next one catches up).
    """

    def __init__(self, files: list[IO], every: int = 8 << 20):
        self.files = files
        self.every = every
        self.pending = 0
        self.thread: threading.Thread | None = None

    def wrote(self, nbytes: int) -> None:
        """`nbytes` more were written to the files: start their write-back when `every` have piled up."""
        self.pending += nbytes
        if self.pending < self.every or (self.thread is not None and self.thread.is_alive()):
            return
        self.pending = 0
        for fh in self.files:
            fh.flush()
        fds = [fh.fileno() for fh in self.files]
        self.thread = threading.Thread(target=self.sync, args=(fds,), name="contextsort-writeback", daemon=True)
        self.thread.start()

    @staticmethod
    def sync(fds: list[int]) -> None:
        for fd in fds:
            try:
                os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
            except OSError:  # the file was closed meanwhile, or the disk refused: commit's fsync reports it
                pass

    def finish(self) -> None:
        """Wait for the write-back under way (call before closing the files)."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None


def write_json(path: str | os.PathLike, obj: object) -> None:
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, default=str)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """One JSON object per line (UTF-8, non-ASCII kept); returns the number of rows."""
    n = 0
    with atomic_write(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
            n += 1
    return n


def save_npy(path: str | os.PathLike, arr: np.ndarray) -> None:
    with atomic_write(path, "wb") as fh:
        np.save(fh, arr)


def remove_stale_tmp(directory: str | os.PathLike) -> int:
    """Delete `*.tmp` files a killed run left behind in `directory` (recursively); returns how many."""
    n = 0
    for p in Path(directory).rglob("*" + TMP_SUFFIX):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n
