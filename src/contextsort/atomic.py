"""The one way contextsort writes a file: to a temporary name, flushed, fsynced, renamed.

A crash (even kill -9) leaves either the old file or the new one, never half of one; a
leftover `*.tmp` is removed by the next run. A full disk becomes a ResourceError that
says how to resume.
"""

from __future__ import annotations

import errno
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator

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
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces `path`, on failure it is removed."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, mode, encoding=encoding if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise disk_full(path) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Fsync a file written elsewhere (a memory map, a writer library) and rename it to `path`."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


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
