"""Writers of packed token contexts, sharded by size.

Every writer receives `ContextBatch`es (see `contextsort.pack`) in written order: a
``[B, L]`` token array padded to L, the real length of each context, and ragged document
offsets. A shard holds whole contexts; every format splits at the same contexts, so shard i
of one format holds the same contexts as shard i of another.

Formats (each in its own sub-folder of the output):

- ``megatron``: Megatron-LM / megatron-core ``IndexedDataset`` (``.bin`` + ``.idx``), one
  sequence (and one document) per context, so Megatron's GPTDataset shuffles whole contexts
  and never reorders the documents inside one.
- ``parquet``: Parquet shards named ``train-XXXXX-of-YYYYY.parquet`` with columns
  ``input_ids``, ``length``, ``doc_offsets``, ``doc_positions``, ``context``; read by
  pyarrow or HF ``datasets.load_dataset("parquet", ...)`` / ``load_dataset(folder)``.
- ``numpy``: nanoGPT-style flat token files (``np.memmap(f, dtype).reshape(-1, L)``)
  beside an ``.npz`` index.

The ``megatron`` and ``numpy`` shards carry the same ``.npz`` index (``length``,
``doc_offsets``, ``doc_offsets_ptr``, ``doc_positions``, ``context``): the documents of
context k start at ``doc_offsets[doc_offsets_ptr[k]:doc_offsets_ptr[k+1]]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ..atomic import commit

CONTEXT_FORMATS = ("megatron", "parquet", "numpy")


@dataclass
class ShardLayout:
    n_contexts: int
    per_shard: int
    n_shards: int

    def bounds(self, shard: int) -> tuple[int, int]:
        return shard * self.per_shard, min(self.n_contexts, (shard + 1) * self.per_shard)


def shard_layout(n_contexts: int, context_length: int, dtype, shard_bytes: int | None) -> ShardLayout:
    """Contexts per shard so that a shard's tokens stay within `shard_bytes` (at least one context)."""
    itemsize = np.dtype(dtype).itemsize
    if shard_bytes:
        per = max(1, int(shard_bytes) // (context_length * itemsize))
    else:
        per = max(1, n_contexts)
    n_shards = max(1, -(-n_contexts // per))
    return ShardLayout(n_contexts, per, n_shards)


class ContextWriter:
    """Base class: splits batches at shard boundaries; subclasses open/write/close shards."""

    name = "base"

    def __init__(self, out_dir: Path, context_length: int, dtype, layout: ShardLayout, start: int = 0, **_):
        """start: written position of the first context it will get (a task writing a range)."""
        self.dir = Path(out_dir) / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.L = int(context_length)
        self.dtype = np.dtype(dtype)
        self.layout = layout
        self.written = int(start)  # written position of the next context
        self.shard = -1
        self.files: list[str] = []

    def write(self, batch) -> None:
        a = 0
        while a < len(batch):
            shard = self.written // self.layout.per_shard
            if shard != self.shard:
                if self.shard >= 0:
                    self._close_shard()
                self.shard = shard
                self._open_shard(shard)
            room = self.layout.bounds(shard)[1] - self.written
            b = min(len(batch), a + room)
            self._write(batch.slice(a, b) if (a, b) != (0, len(batch)) else batch)
            self.written += b - a
            a = b

    def close(self) -> list[str]:
        if self.shard < 0:  # no context at all: still write one (empty) shard
            self.shard = 0
            self._open_shard(0)
        self._close_shard()
        return self.files

    def _rel(self, path: Path) -> str:
        self.files.append(f"{self.name}/{path.name}")
        return path.name

    # subclasses
    def _open_shard(self, shard: int) -> None:
        raise NotImplementedError

    def _write(self, batch) -> None:
        raise NotImplementedError

    def _close_shard(self) -> None:
        raise NotImplementedError


class IndexSidecar:
    """Collects the per-context index of one shard and saves it as ``.npz``."""

    def __init__(self):
        self.length, self.context, self.offsets, self.positions, self.counts = [], [], [], [], []

    def add(self, batch) -> None:
        self.length.append(batch.lengths)
        self.context.append(batch.context)
        self.offsets.append(batch.doc_offsets)
        self.positions.append(batch.doc_positions)
        self.counts.append(np.diff(batch.doc_offsets_ptr))

    def save(self, path: Path) -> None:
        def cat(parts, dt):
            return np.concatenate(parts).astype(dt, copy=False) if parts else np.zeros(0, dt)

        counts = cat(self.counts, np.int64)
        ptr = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, length=cat(self.length, np.int32), context=cat(self.context, np.int64),
                 doc_offsets=cat(self.offsets, np.int32), doc_offsets_ptr=ptr,
                 doc_positions=cat(self.positions, np.int64))
        commit(tmp, path)


def get_context_writer(fmt: str, out_dir: Path, context_length: int, dtype, layout: ShardLayout, **kw) -> ContextWriter:
    if fmt == "megatron":
        from .megatron import MegatronWriter

        return MegatronWriter(out_dir, context_length, dtype, layout, **kw)
    if fmt == "parquet":
        from .parquet_contexts import ParquetContextWriter

        return ParquetContextWriter(out_dir, context_length, dtype, layout, **kw)
    if fmt == "numpy":
        from .numpy_contexts import NumpyContextWriter

        return NumpyContextWriter(out_dir, context_length, dtype, layout, **kw)
    raise ValueError(f"unknown context format {fmt!r} (available: {', '.join(CONTEXT_FORMATS)})")


def load_index(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The ``.npz`` index of a megatron/numpy shard as a dict of arrays."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
