"""nanoGPT-style flat token files: ``contexts_XXXXX.bin`` holds contexts back to back
(``np.memmap(path, dtype=DTYPE, mode="r").reshape(-1, L)``; DTYPE and L are in
``pack.json``), and ``contexts_XXXXX.npz`` its per-context index (`formats.contexts`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .contexts import ContextWriter, IndexSidecar
from ..atomic import commit


def open_contexts(bin_path: str | os.PathLike, context_length: int, dtype) -> np.ndarray:
    """The contexts of one shard as a read-only [C, L] memmap."""
    flat = np.memmap(bin_path, dtype=np.dtype(dtype), mode="r")
    return flat.reshape(-1, int(context_length))


class NumpyContextWriter(ContextWriter):
    name = "numpy"

    def _path(self, shard: int) -> Path:
        return self.dir / f"contexts_{shard:05d}"

    def _open_shard(self, shard: int) -> None:
        p = self._path(shard)
        self._fh = open(p.with_name(p.name + ".bin.tmp"), "wb")
        self._side = IndexSidecar()

    def _write(self, batch) -> None:
        self._fh.write(np.ascontiguousarray(batch.tokens, dtype=self.dtype).tobytes())
        self._side.add(batch)

    def _close_shard(self) -> None:
        p = self._path(self.shard)
        self._fh.flush()
        self._fh.close()
        commit(p.with_name(p.name + ".bin.tmp"), p.with_name(p.name + ".bin"))
        self._side.save(p.with_name(p.name + ".npz"))
        self._rel(p.with_name(p.name + ".bin"))
        self._rel(p.with_name(p.name + ".npz"))
