"""Parquet shards of packed contexts, laid out the way HF `datasets` finds them:
``parquet/train-XXXXX-of-YYYYY.parquet`` (``datasets.load_dataset("RUN/packed/parquet")``
or ``load_dataset("parquet", data_files=...)``).

Columns: ``input_ids`` (list of uint16/uint32, L tokens, padded), ``length`` (real tokens),
``doc_offsets`` (where each document or document piece starts), ``doc_positions`` (the
position of each of those documents in the ordered corpus, i.e. its line in
``ordered.jsonl``), ``context`` (index of the context before shuffling).
"""

from __future__ import annotations

import os

import numpy as np

from .contexts import ContextWriter
from ..atomic import commit


def _list_array(values: np.ndarray, offsets: np.ndarray, value_type):
    import pyarrow as pa

    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32), type=pa.int32()),
                                    pa.array(values, type=value_type))


class ParquetContextWriter(ContextWriter):
    name = "parquet"

    def __init__(self, out_dir, context_length, dtype, layout, **kw):
        import pyarrow as pa

        super().__init__(out_dir, context_length, dtype, layout, **kw)
        self._tok_type = pa.uint16() if self.dtype == np.uint16 else pa.uint32()
        self.schema = pa.schema([
            ("input_ids", pa.list_(self._tok_type)),
            ("length", pa.int32()),
            ("doc_offsets", pa.list_(pa.int32())),
            ("doc_positions", pa.list_(pa.int64())),
            ("context", pa.int64()),
        ])

    def _path(self, shard: int):
        return self.dir / f"train-{shard:05d}-of-{self.layout.n_shards:05d}.parquet"

    def _open_shard(self, shard: int) -> None:
        import pyarrow.parquet as pq

        p = self._path(shard)
        self._tmp = p.with_name(p.name + ".tmp")
        self._w = pq.ParquetWriter(self._tmp, self.schema)

    def _write(self, batch) -> None:
        import pyarrow as pa

        B = len(batch)
        tok_off = np.arange(B + 1, dtype=np.int64) * self.L
        cols = [
            _list_array(np.ascontiguousarray(batch.tokens).reshape(-1), tok_off, self._tok_type),
            pa.array(batch.lengths, type=pa.int32()),
            _list_array(batch.doc_offsets, batch.doc_offsets_ptr, pa.int32()),
            _list_array(batch.doc_positions, batch.doc_offsets_ptr, pa.int64()),
            pa.array(batch.context, type=pa.int64()),
        ]
        self._w.write_table(pa.Table.from_arrays(cols, schema=self.schema))

    def _close_shard(self) -> None:
        self._w.close()
        p = self._path(self.shard)
        commit(self._tmp, p)
        self._rel(p)
