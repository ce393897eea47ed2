"""Writers of the ordered documents (JSONL, Parquet). Token-context formats live beside them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from ..corpus import DocStore

DOC_FORMATS = ("jsonl", "parquet")
BATCH = 8192


def _rows(store: DocStore, order: np.ndarray, label_field: str | None, start: int, stop: int, base: int = 0):
    """Records of order[start:stop]; `base`: the global position of order[0] (a shard of a longer order)."""
    has_labels = store.label_codes is not None
    for pos in range(start, stop):
        i = int(order[pos])
        rec = store.record(i)
        rec["position"] = base + pos
        if has_labels and label_field and label_field not in rec:
            rec[label_field] = store.label(i)
        yield rec


def write_ordered(run_dir: Path, store: DocStore, order: np.ndarray, formats, label_field: str | None,
                  progress=None) -> list[str]:
    """Write the documents of `order` (original fields + `position`) in each format; return file names.
    `progress(n)` is called as JSONL rows are written."""
    unknown = [f for f in formats if f not in DOC_FORMATS]
    if unknown:
        raise ValueError(f"unknown output format(s) {unknown} (available: {', '.join(DOC_FORMATS)})")
    written = []
    n = len(order)
    if "jsonl" in formats:
        path = Path(run_dir) / "ordered.jsonl"
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for start in range(0, n, BATCH):
                stop = min(n, start + BATCH)
                for rec in _rows(store, order, label_field, start, stop):
                    fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
                if progress is not None:
                    progress(stop - start)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        written.append(path.name)
    if "parquet" in formats:
        written.append(_write_parquet(Path(run_dir) / "ordered.parquet", store, order, label_field))
    return written


def batch_table(rows: list[dict]):
    """Arrow table of one batch of records with every field any of them has.

    pa.Table.from_pylist alone takes the field names of the first row only, which
    would silently drop a field that the first record of a batch lacks.
    """
    import pyarrow as pa

    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])


def _write_parquet(path: Path, store: DocStore, order: np.ndarray, label_field) -> str:
    """Two passes: unify the schema over all batches (records may differ), then write."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(order)
    schema = None
    for start in range(0, n, BATCH):
        t = batch_table(list(_rows(store, order, label_field, start, min(n, start + BATCH))))
        schema = t.schema if schema is None else pa.unify_schemas([schema, t.schema], promote_options="permissive")
    if schema is None:
        schema = pa.schema([("position", pa.int64())])
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, schema) as w:
        for start in range(0, n, BATCH):
            rows = list(_rows(store, order, label_field, start, min(n, start + BATCH)))
            w.write_table(pa.Table.from_pylist(rows, schema=schema))
    os.replace(tmp, path)
    return path.name
