"""Writers of the ordered documents (JSONL, Parquet). Token-context formats live beside them.

Both formats hold each document's original fields plus its position in the order;
the Parquet schema comes from `schema.output_schema` (decided from what ingest saw),
so writing never fails on valid JSON and every engine writes the same schema.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..corpus import DocStore
from .columns import table_from_rows
from .schema import OutputSchema, output_schema
from .spliced import spliced_batch
from ..atomic import commit

DOC_FORMATS = ("jsonl", "parquet")
BATCH = 8192


def ordered_rows(store: DocStore, order: np.ndarray, policy: OutputSchema, label_field: str | None, start: int, stop: int,
                 base: int = 0):
    """Records of order[start:stop] with their position; `base`: the global position of order[0] (a shard of a longer order)."""
    has_labels = store.label_codes is not None
    pos_field = policy.position_field
    ids = np.asarray(order[start:stop], dtype=np.int64)
    for pos, i, rec in zip(range(start, stop), ids.tolist(), store.records(ids)):
        rec[pos_field] = base + pos
        if has_labels and label_field and label_field not in rec:
            rec[label_field] = store.label(i)
        yield rec


# json.dumps(rec, ensure_ascii=False, default=str) builds this encoder on every call; built once,
# the same bytes come out 20% sooner (0.05 s per 30k documents)
JSONL_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def jsonl_bytes(rows: list[dict]) -> bytes:
    """One JSON line per record, UTF-8 (the same bytes whichever engine writes them)."""
    encode = JSONL_ENCODER.encode
    return "".join(encode(rec) + "\n" for rec in rows).encode("utf-8")


def parquet_table(rows: list[dict], policy: OutputSchema):
    """Arrow table of one batch of records with the policy's schema (converted fields as JSON text)."""
    return table_from_rows(policy.parquet_rows(rows), policy.schema)


def ordered_batch(store: DocStore, order: np.ndarray, policy: OutputSchema, label_field: str | None, start: int, stop: int,
                  base: int = 0, table: bool = True) -> tuple[bytes, object]:
    """(JSONL bytes, Arrow table or None) of order[start:stop]: the stored records with their
    position spliced in where that path vouches for them (spliced.py), else each record decoded."""
    ids = np.asarray(order[start:stop], dtype=np.int64)
    fast = spliced_batch(store, ids, base + start, policy, label_field, table)
    if fast is not None:
        return fast
    rows = list(ordered_rows(store, order, policy, label_field, start, stop, base))
    return jsonl_bytes(rows), (parquet_table(rows, policy) if table else None)


def write_ordered(run_dir: Path, store: DocStore, order: np.ndarray, formats, label_field: str | None,
                  progress=None) -> tuple[list[str], dict]:
    """Write the documents of `order` (original fields + position) in each format.

    Returns (file names, info); info holds `position_field` and `converted_fields`
    (field -> why it is written to Parquet as JSON text), for the manifest.
    `progress(n)` is called as JSONL rows are written.
    """
    unknown = [f for f in formats if f not in DOC_FORMATS]
    if unknown:
        raise ValueError(f"unknown output format(s) {unknown} (available: {', '.join(DOC_FORMATS)})")
    policy = output_schema(store, label_field)
    n = len(order)
    run_dir = Path(run_dir)
    names = [f"ordered.{f}" for f in DOC_FORMATS if f in formats]
    tmps = {f: run_dir / f"ordered.{f}.tmp" for f in DOC_FORMATS if f in formats}
    # one pass: each batch of records is read from the store once and written in every format
    jsonl = open(tmps["jsonl"], "wb") if "jsonl" in tmps else None
    parquet = None
    if "parquet" in tmps:
        import pyarrow.parquet as pq

        parquet = pq.ParquetWriter(tmps["parquet"], policy.schema)
    try:
        for start in range(0, n, BATCH):
            stop = min(n, start + BATCH)
            data, table = ordered_batch(store, order, policy, label_field, start, stop, table=parquet is not None)
            if jsonl is not None:
                jsonl.write(data)
            if parquet is not None:
                parquet.write_table(table)
            if progress is not None:
                progress(stop - start)
    finally:
        if jsonl is not None:
            jsonl.close()
        if parquet is not None:
            parquet.close()
    for f, tmp in tmps.items():
        commit(tmp, run_dir / f"ordered.{f}")
    return names, policy.info() if "parquet" in formats else {"position_field": policy.position_field}
