"""Length-batched, resumable encoding into a .npy file written with explicit writes.

Documents are encoded longest first in fixed batches of similar length (little padding
for neural models, and an out-of-memory shows up in the first batch, not the last), and
each batch's rows are written at their original positions of the `.npy` file as soon
as they are computed, with one `os.pwrite` per run of consecutive rows. After every batch
the file is synced and a small state file records how many batches are done, so a crashed
or interrupted run continues from the last finished batch. The batches are a pure function
of (lengths, batch_size), so the resumed file is identical to an uninterrupted one.

Explicit writes, not a memory map: pages of a shared file mapping that a process has
written count in its resident set until they are unmapped, so writing 1M x 256 float32
through a map made the whole 1 GB file resident in the embed stage. Written with pwrite,
the rows sit in the kernel's page cache (shared, reclaimable), not in the process
(docs/benchmarks.md, "Memory at 1M").
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from ..atomic import commit
from ..rowfile import RowFile

DTYPES = ("float32", "float16")
SYNC_DATA = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
MIN_NORM = 0.5  # a unit-norm embedder's row below this norm is broken (zero or NaN): the document is rejected


def length_order(lengths: np.ndarray) -> np.ndarray:
    """Positions sorted by decreasing length; ties keep input order (deterministic)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.argsort(-lengths, kind="stable")


def partial_paths(path: Path) -> tuple[Path, Path]:
    """(memmap being filled, its state file) for the final artifact `path`."""
    path = Path(path)
    stem = path.name[: -len(".npy")] if path.name.endswith(".npy") else path.name
    return path.with_name(stem + ".partial.npy"), path.with_name(stem + ".partial.json")


@dataclass
class EncodeStats:
    batches: int
    resumed_batches: int  # batches found finished in an earlier, interrupted run
    seconds: float  # encoding time in this call
    docs_encoded: int  # documents encoded in this call

    @property
    def docs_per_second(self) -> float:
        return self.docs_encoded / self.seconds if self.seconds > 0 else 0.0


def encode_to_memmap(
    embedder,
    get_texts: Callable[[np.ndarray], Sequence[str]],
    lengths: np.ndarray,
    path: str | os.PathLike,
    batch_size: int,
    dtype: str = "float32",
    identity: dict | None = None,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    min_norm: float = MIN_NORM,
    encode_batches: Callable[[list[np.ndarray]], Iterable[np.ndarray]] | None = None,
) -> tuple[np.ndarray, EncodeStats]:
    """Encode every document into the .npy file `path`; return (valid mask, stats).

    `get_texts(positions)` returns the texts at those positions. `identity` is anything
    that must match for an interrupted file to be reused (e.g. a config fingerprint);
    the embedder name, dim, dtype, batch size and batch plan are always part of it.
    Rows whose vector is not finite or has norm < `min_norm` are zeroed and marked invalid.
    `encode_batches(list of position arrays)` yields each batch's vectors in order (an
    engine's map); by default `embedder.encode` runs here, batch after batch.
    """
    if dtype not in DTYPES:
        raise ValueError(f"embedding dtype must be one of {DTYPES}, got '{dtype}'")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    path = Path(path)
    n = len(lengths)
    dim = int(embedder.dim)
    order = length_order(lengths)
    n_batches = (n + batch_size - 1) // batch_size
    ident = {
        "user": identity or {},
        "embedder": getattr(embedder, "name", type(embedder).__name__),
        "dim": dim,
        "dtype": dtype,
        "n": n,
        "batch_size": int(batch_size),
        "plan": hashlib.blake2b(order.astype(np.int64).tobytes(), digest_size=16).hexdigest(),
    }
    part, state_path = partial_paths(path)
    done = _resumable(part, state_path, ident, (n, dim), dtype)
    if done:
        if on_resume is not None:
            on_resume(min(n, done * batch_size))
    else:
        for p in (part, state_path):
            p.unlink(missing_ok=True)
        create_npy(part, (n, dim), np.dtype(dtype))
        _write_state(state_path, ident, 0)
    resumed = done
    t0 = time.perf_counter()
    todo = [order[b * batch_size : (b + 1) * batch_size] for b in range(done, n_batches)]
    if encode_batches is None:
        results: Iterable[np.ndarray] = (embedder.encode(list(get_texts(idx))) for idx in todo)
    else:
        results = encode_batches(todo)
    offset = RowFile(part).offset
    fd = os.open(part, os.O_RDWR)
    try:
        for b, (idx, vecs) in enumerate(zip(todo, results), start=done):
            vecs = np.asarray(vecs)
            if vecs.shape != (len(idx), dim):
                raise ValueError(f"embedder {ident['embedder']} returned shape {vecs.shape} for a batch of {len(idx)} (expected ({len(idx)}, {dim}))")
            write_rows(fd, offset, idx, vecs.astype(dtype, copy=False))
            SYNC_DATA(fd)  # rows on disk before the state says they are
            _write_state(state_path, ident, b + 1)
            if progress is not None:
                progress(len(idx))
        seconds = time.perf_counter() - t0
        valid = _validate(fd, RowFile(part), min_norm)
    finally:
        os.close(fd)
    commit(part, path)
    state_path.unlink(missing_ok=True)
    encoded = n - min(n, resumed * batch_size)
    return valid, EncodeStats(n_batches, resumed, seconds, encoded)


def create_npy(path: Path, shape: tuple[int, int], dtype: np.dtype) -> None:
    """A zero-filled .npy file of `shape` (sparse on disk): the header numpy writes, then the size set."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                  "fortran_order": False, "shape": tuple(shape)})
        fh.truncate(fh.tell() + int(np.prod(shape)) * dtype.itemsize)


def write_rows(fd: int, offset: int, rows: np.ndarray, values: np.ndarray) -> None:
    """Write `values[k]` as row `rows[k]` of the .npy open at `fd` (data starting at byte
    `offset`): rows in file order, one pwrite per run of consecutive rows."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return
    dest = np.argsort(rows, kind="stable")
    sorted_rows = rows[dest]
    data = np.ascontiguousarray(values[dest])
    row_bytes = data.strides[0] if data.ndim > 1 else data.itemsize
    view = memoryview(data).cast("B")
    breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
    starts = np.concatenate(([0], breaks)).tolist()
    ends = np.concatenate((breaks, [len(rows)])).tolist()
    first_rows = sorted_rows[starts].tolist()
    for a, e, r in zip(starts, ends, first_rows):
        chunk, pos = view[a * row_bytes : e * row_bytes], offset + r * row_bytes
        while chunk:  # a write may write less than asked
            wrote = os.pwrite(fd, chunk, pos)
            chunk, pos = chunk[wrote:], pos + wrote


def _validate(fd: int, rows: RowFile, min_norm: float) -> np.ndarray:
    """Valid = finite with norm >= min_norm; invalid rows are zeroed in the file."""
    valid = np.zeros(len(rows), dtype=bool)
    zero = np.zeros((1, rows.shape[1]), rows.dtype)
    for s, block in rows.slabs():
        with np.errstate(invalid="ignore", over="ignore"):
            norms = np.linalg.norm(block.astype(np.float32, copy=False), axis=1)
        ok = np.isfinite(norms) & (norms >= min_norm)
        valid[s : s + len(block)] = ok
        bad = np.flatnonzero(~ok) + s
        if len(bad):
            write_rows(fd, rows.offset, bad, np.repeat(zero, len(bad), axis=0))
    if not valid.all():
        SYNC_DATA(fd)
    return valid


def _resumable(part: Path, state_path: Path, ident: dict, shape: tuple, dtype: str) -> int:
    """Batches already finished in `part`, or 0 when it cannot be reused."""
    if not (part.exists() and state_path.exists()):
        return 0
    try:
        state = json.loads(state_path.read_text())
        mm = np.lib.format.open_memmap(part, mode="r")
    except Exception:
        return 0
    ok = state.get("identity") == ident and mm.shape == shape and mm.dtype == np.dtype(dtype)
    del mm
    return int(state.get("batches_done", 0)) if ok else 0


def _write_state(path: Path, ident: dict, batches_done: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"identity": ident, "batches_done": batches_done}))
    commit(tmp, path)
