"""Tokenizing the document store as tasks (engine ray): ranges of documents encoded by
tasks, joined by the driver.

The driver cuts the store into about RANGES_PER_WORKER ranges per worker, of about equal
text bytes, each a run of whole batches of the one pass (`pack.batch_stop`), so a task
encodes the batches one pass encodes. A task reopens the store, builds its tokenizer from
its spec, encodes its range in one thread (a task holds one CPU) and writes a part: the
ids, as the one pass writes them (``NNNNN.bin``), and each document's sequence length
(``NNNNN.len.npy``). The driver joins the parts in store order, byte for byte, into
``stream.bin`` and takes the lengths for ``doc_off.npy``; `pack.tokenize_store` writes
the rest as one pass does. Parts live in ``<tokens>.tmp/.parts`` and go before the folder
is committed. On a multi-node cluster the run directory must be on storage every node can
read and write (as for the other task stages).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

PARTS_DIR = ".parts"
RANGES_PER_WORKER = 2


def range_bounds(store, batch_bytes: int, workers: int, per_worker: int = RANGES_PER_WORKER) -> list[tuple[int, int]]:
    """Document ranges [a, b) covering the store: about `per_worker` x `workers` of them, of
    about equal text bytes, each starting and ending on a batch boundary of the one pass."""
    from .pack import batch_stop

    n = len(store)
    if n == 0:
        return []
    off = store.txt_off
    target = off[n] / max(1, per_worker * workers)
    cuts = [0]
    a = 0
    while a < n:
        a = batch_stop(store, a, n, batch_bytes)
        if a == n or off[a] - off[cuts[-1]] >= target:
            cuts.append(a)
    return list(zip(cuts[:-1], cuts[1:]))


@contextmanager
def one_thread() -> Iterator[None]:
    """HF `tokenizers` encodes a batch on all cores unless told not to (read at every call)."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def tokenize_part(store_dir: str, tokenizer_spec: str, start: int, stop: int, bos: bool, batch_bytes: int,
                  keep: np.ndarray | None, dtype: str, part: str) -> int:
    """Task: documents [start, stop) of the store encoded with separators into ``part.bin``,
    their sequence lengths into ``part.len.npy``; returns the tokens written."""
    from .corpus import DocStore
    from .pack import encoded_batches
    from .tokenizer import get_tokenizer

    store = DocStore(Path(store_dir))
    tok = get_tokenizer(tokenizer_spec)
    seq_len = np.zeros(stop - start, dtype=np.int64)
    with one_thread(), open(part + ".bin", "wb") as fh:
        for a, b, ids, seq in encoded_batches(store, tok, start, stop, bos, np.dtype(dtype), batch_bytes, keep, ahead=0):
            fh.write(ids.tobytes())
            seq_len[a - start:b - start] = seq
    np.save(part + ".len.npy", seq_len)
    return int(seq_len.sum())


def tokenize_ranges(store, tokenizer_spec: str, stream_path: Path, bos: bool, batch_bytes: int,
                    bounds: list[tuple[int, int]], keep: np.ndarray | None, dtype, mapper: Callable,
                    progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Tokenize the ranges `bounds` as tasks (`mapper(fn, args)`: an engine's map), join their
    ids into `stream_path`; returns every document's sequence length (int64 [N])."""
    stream_path = Path(stream_path)
    parts = stream_path.parent / PARTS_DIR
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    dtype = np.dtype(dtype)
    args = ((str(store.dir), tokenizer_spec, a, b, bool(bos), int(batch_bytes), None if keep is None else keep[a:b],
             dtype.str, str(parts / f"{k:05d}")) for k, (a, b) in enumerate(bounds))
    tokens: dict[int, int] = {}
    for k, written in mapper(tokenize_part, args):
        tokens[k] = written
        if progress:
            progress(bounds[k][1] - bounds[k][0])
    seq_len = np.zeros(len(store), dtype=np.int64)
    with open(stream_path, "wb") as fh:
        for k, (a, b) in enumerate(bounds):
            part = parts / f"{k:05d}"
            lens = np.load(str(part) + ".len.npy")
            size = os.path.getsize(str(part) + ".bin")
            if len(lens) != b - a or int(lens.sum()) != tokens[k] or size != tokens[k] * dtype.itemsize:
                raise RuntimeError(f"tokenize: task {k} wrote {size} bytes and {len(lens)} lengths for documents [{a}, {b})")
            seq_len[a:b] = lens
            with open(str(part) + ".bin", "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 22)
    shutil.rmtree(parts)
    return seq_len
