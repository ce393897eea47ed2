"""Megatron-LM / megatron-core indexed dataset (``PREFIX.bin`` + ``PREFIX.idx``).

Layout (megatron/core/datasets/indexed_dataset.py, ``_IndexWriter``), all little-endian:

    .idx  b"MMIDIDX\\x00\\x00"              9-byte magic
          <Q  1                           version
          <B  dtype code                  1 uint8, 2 int8, 3 int16, 4 int32, 5 int64,
                                          6 float64, 7 float32, 8 uint16
          <Q  sequence count S
          <Q  document count D            (= len(document_indices), i.e. documents + 1)
          int32[S]  sequence lengths      (tokens)
          int64[S]  sequence pointers     (byte offset of each sequence in .bin)
          int64[D]  document indices      (sequence index where each document starts, then S)
    .bin  the tokens of every sequence, back to back, in the dtype above

Here every context is one sequence and one document (``document_indices = 0..S``), padded
to L tokens: Megatron's GPTDataset treats each sequence as a document and shuffles those,
so it shuffles whole contexts and keeps the document order inside each. With
``--seq-length L`` and ``add_extra_token_to_sequence=False`` its samples are exactly our
contexts. The document offsets inside each context are in the ``PREFIX.npz`` sidecar.

Megatron has no uint32 code: vocabularies above 65,536 tokens are written as int32.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from .contexts import ContextWriter, IndexSidecar
from ..atomic import commit

INDEX_HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {
    np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
    np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7, np.dtype(np.uint16): 8,
}
CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}


def megatron_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype in DTYPE_CODES:
        return dtype
    if dtype == np.uint32:
        return np.dtype(np.int32)
    raise ValueError(f"Megatron cannot store tokens as {dtype}")


def write_index(path: Path, sequence_lengths: np.ndarray, document_indices: np.ndarray, dtype) -> None:
    """Write a Megatron ``.idx`` file (no sequence modes: not multimodal)."""
    dtype = np.dtype(dtype)
    lengths = np.asarray(sequence_lengths, dtype=np.int32)
    pointers = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1].astype(np.int64) * dtype.itemsize, out=pointers[1:])
    docs = np.asarray(document_indices, dtype=np.int64)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(INDEX_HEADER)
        fh.write(struct.pack("<Q", 1))
        fh.write(struct.pack("<B", DTYPE_CODES[dtype]))
        fh.write(struct.pack("<Q", len(lengths)))
        fh.write(struct.pack("<Q", len(docs)))
        fh.write(lengths.astype("<i4", copy=False).tobytes(order="C"))
        fh.write(pointers.astype("<i8", copy=False).tobytes(order="C"))
        fh.write(docs.astype("<i8", copy=False).tobytes(order="C"))
    commit(tmp, path)


def read_index(path: str | os.PathLike) -> dict:
    """Parse a ``.idx`` file (numpy only; megatron-core's ``_IndexReader`` does the same)."""
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    raw = bytes(buf[:34])
    if raw[:9] != INDEX_HEADER:
        raise ValueError(f"{path}: not a Megatron index (bad header)")
    (version,) = struct.unpack("<Q", raw[9:17])
    (code,) = struct.unpack("<B", raw[17:18])
    (n_seq,) = struct.unpack("<Q", raw[18:26])
    (n_doc,) = struct.unpack("<Q", raw[26:34])
    off = 34
    lengths = np.frombuffer(buf, dtype="<i4", count=n_seq, offset=off)
    off += lengths.nbytes
    pointers = np.frombuffer(buf, dtype="<i8", count=n_seq, offset=off)
    off += pointers.nbytes
    docs = np.frombuffer(buf, dtype="<i8", count=n_doc, offset=off)
    return {"version": version, "dtype": CODE_DTYPES[code], "sequence_lengths": lengths,
            "sequence_pointers": pointers, "document_indices": docs}


class MegatronReader:
    """Minimal reader: ``reader[i]`` is sequence i (numpy, memory-mapped)."""

    def __init__(self, prefix: str | os.PathLike):
        prefix = str(prefix)
        self.index = read_index(prefix + ".idx")
        self.dtype = self.index["dtype"]
        self._bin = np.memmap(prefix + ".bin", dtype=self.dtype, mode="r")

    def __len__(self) -> int:
        return len(self.index["sequence_lengths"])

    def __getitem__(self, i: int) -> np.ndarray:
        start = int(self.index["sequence_pointers"][i]) // self.dtype.itemsize
        return self._bin[start:start + int(self.index["sequence_lengths"][i])]


class MegatronWriter(ContextWriter):
    name = "megatron"

    def __init__(self, out_dir, context_length, dtype, layout, **kw):
        super().__init__(out_dir, context_length, megatron_dtype(dtype), layout, **kw)

    def _prefix(self, shard: int) -> Path:
        return self.dir / f"contexts_{shard:05d}"

    def _open_shard(self, shard: int) -> None:
        p = self._prefix(shard)
        self._fh = open(p.with_name(p.name + ".bin.tmp"), "wb")
        self._n = 0
        self._side = IndexSidecar()

    def _write(self, batch) -> None:
        self._fh.write(np.ascontiguousarray(batch.tokens, dtype=self.dtype).tobytes())
        self._n += len(batch)
        self._side.add(batch)

    def _close_shard(self) -> None:
        p = self._prefix(self.shard)
        self._fh.flush()
        self._fh.close()
        commit(p.with_name(p.name + ".bin.tmp"), p.with_name(p.name + ".bin"))
        write_index(p.with_name(p.name + ".idx"), np.full(self._n, self.L, dtype=np.int32),
                    np.arange(self._n + 1, dtype=np.int64), self.dtype)
        self._side.save(p.with_name(p.name + ".npz"))
        for ext in (".bin", ".idx", ".npz"):
            self._rel(p.with_name(p.name + ext))
