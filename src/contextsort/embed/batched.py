"""Length-batched, resumable encoding into a memory-mapped .npy file.

Documents are encoded longest first in fixed batches of similar length (little padding
for neural models, and an out-of-memory shows up in the first batch, not the last), and
each batch's rows are written at their original positions of a `.npy` memory map as soon
as they are computed. After every batch the map is flushed and a small state file records
how many batches are done, so a crashed or interrupted run continues from the last
finished batch. The batches are a pure function of (lengths, batch_size), so the resumed
file is identical to an uninterrupted one.
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

DTYPES = ("float32", "float16")
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
        mm = np.lib.format.open_memmap(part, mode="r+")
        if on_resume is not None:
            on_resume(min(n, done * batch_size))
    else:
        for p in (part, state_path):
            p.unlink(missing_ok=True)
        mm = np.lib.format.open_memmap(part, mode="w+", dtype=np.dtype(dtype), shape=(n, dim))
        _write_state(state_path, ident, 0)
    resumed = done
    t0 = time.perf_counter()
    todo = [order[b * batch_size : (b + 1) * batch_size] for b in range(done, n_batches)]
    if encode_batches is None:
        results: Iterable[np.ndarray] = (embedder.encode(list(get_texts(idx))) for idx in todo)
    else:
        results = encode_batches(todo)
    for b, (idx, vecs) in enumerate(zip(todo, results), start=done):
        vecs = np.asarray(vecs)
        if vecs.shape != (len(idx), dim):
            raise ValueError(f"embedder {ident['embedder']} returned shape {vecs.shape} for a batch of {len(idx)} (expected ({len(idx)}, {dim}))")
        mm[idx] = vecs.astype(dtype, copy=False)
        mm.flush()  # rows on disk before the state says they are
        _write_state(state_path, ident, b + 1)
        if progress is not None:
            progress(len(idx))
    seconds = time.perf_counter() - t0
    valid = _validate(mm, min_norm)
    mm.flush()
    del mm
    commit(part, path)
    state_path.unlink(missing_ok=True)
    encoded = n - min(n, resumed * batch_size)
    return valid, EncodeStats(n_batches, resumed, seconds, encoded)


def _validate(mm: np.ndarray, min_norm: float, chunk: int = 65_536) -> np.ndarray:
    """Valid = finite with norm >= min_norm; invalid rows are zeroed in place."""
    n = mm.shape[0]
    valid = np.zeros(n, dtype=bool)
    for s in range(0, n, chunk):
        block = np.asarray(mm[s : s + chunk], dtype=np.float32)
        with np.errstate(invalid="ignore", over="ignore"):
            norms = np.linalg.norm(block, axis=1)
        ok = np.isfinite(norms) & (norms >= min_norm)
        valid[s : s + chunk] = ok
        if not ok.all():
            bad = np.flatnonzero(~ok) + s
            mm[bad] = 0
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
