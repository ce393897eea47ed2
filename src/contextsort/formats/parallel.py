"""Parallel writing of the ordered documents (engine ray): shards serialised by workers, assembled by the driver.

The order is cut into contiguous shards of a multiple of BATCH rows, so every
shard cuts the order on the local writer's batch grid: Parquet schemas are inferred
per batch (`batch_table`: the fields of all rows of the batch), so the same
batches give the same schema, and row groups fall where the local writer puts them.
Each shard is serialised by a task with the same `_rows` as `write_ordered`, in two
rounds:

1. JSONL part + the shard's Arrow schema (unified over its batches);
2. Parquet part, written with the schema unified over all shards (the same
   `from_pylist(rows, schema=...)` as the local writer, so values convert alike).

The driver then concatenates the JSONL parts byte for byte (identical to the local
file) and copies the Parquet parts' row groups into one `ordered.parquet`. Parts
live in `RUN_DIR/.ordered.parts/` (each written as tmp + rename) and are removed at
the end; the final files are tmp + rename as elsewhere. On a multi-node cluster
the run directory must be on storage every node can write (as for embedding).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..corpus import DocStore
from . import DOC_FORMATS, _rows, batch_table

PARTS_DIR = ".ordered.parts"

Mapper = Callable[[Callable, Iterable[tuple]], Iterator[tuple[int, object]]]


def shard_bounds(n: int, workers: int, rows_per_part: int | None = None, batch: int | None = None) -> list[tuple[int, int]]:
    """Contiguous [start, stop) shards of about n / workers or `rows_per_part` rows, rounded up to a multiple of `batch`."""
    batch = batch or _batch()
    if n <= 0:
        return []
    per = -(-n // max(1, workers)) if rows_per_part is None else max(1, int(rows_per_part))
    rows_per_part = -(-per // batch) * batch
    return [(s, min(n, s + rows_per_part)) for s in range(0, n, rows_per_part)]


def _part(parts: Path, k: int, ext: str) -> Path:
    return parts / f"part-{k:05d}.{ext}"


def _fsync_replace(tmp: Path, path: Path, fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
    os.replace(tmp, path)


def _batch() -> int:
    from . import BATCH  # read at call time: tests shrink it

    return BATCH


def jsonl_shard(store_dir: str, part_order: np.ndarray, base: int, label_field: str | None, out: str | None,
                pq_out: str | None, batch: int):
    """Task, round 1: one pass over the shard's records, JSONL part and (first try) Parquet part.

    Returns (rows, JSONL bytes, shard schema or None, Parquet part usable). The Parquet
    part is kept only while every batch infers the same schema; round 2 rewrites it when
    that failed or the schema unified over all shards differs.
    """
    store = DocStore(Path(store_dir))
    m = len(part_order)
    schema = first = None
    nbytes = 0
    fh = open(out + ".tmp", "wb") if out else None
    pw = None
    pq_ok = pq_out is not None
    try:
        for start in range(0, m, batch):
            rows = list(_rows(store, part_order, label_field, start, min(m, start + batch), base))
            if fh is not None:
                data = "".join(json.dumps(rec, ensure_ascii=False, default=str) + "\n" for rec in rows).encode("utf-8")
                fh.write(data)
                nbytes += len(data)
            if pq_out is not None:
                import pyarrow as pa
                import pyarrow.parquet as pq

                t = batch_table(rows)
                if schema is None:
                    schema = first = t.schema
                    pw = pq.ParquetWriter(pq_out + ".tmp", first)
                else:
                    schema = pa.unify_schemas([schema, t.schema], promote_options="permissive")
                if pq_ok and t.schema.equals(first):
                    pw.write_table(t)
                elif pq_ok:  # batches differ: this part is written in round 2
                    pq_ok = False
                    pw.close()
                    pw = None
                    os.remove(pq_out + ".tmp")
        if fh is not None:
            _fsync_replace(Path(out + ".tmp"), Path(out), fh)
            fh = None
        if pw is not None:
            pw.close()
            pw = None
            os.replace(pq_out + ".tmp", pq_out)
    finally:
        if fh is not None:
            fh.close()
        if pw is not None:
            pw.close()
    return m, nbytes, schema, pq_ok and m > 0


def parquet_shard(store_dir: str, part_order: np.ndarray, base: int, label_field: str | None, schema, out: str, batch: int) -> int:
    """Task, round 2: write the shard's Parquet part with the unified `schema`; return its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = DocStore(Path(store_dir))
    m = len(part_order)
    tmp = out + ".tmp"
    with pq.ParquetWriter(tmp, schema) as w:
        for start in range(0, m, batch):
            rows = list(_rows(store, part_order, label_field, start, min(m, start + batch), base))
            w.write_table(pa.Table.from_pylist(rows, schema=schema))
    os.replace(tmp, out)
    return m


def write_ordered_parallel(
    run_dir: Path,
    store: DocStore,
    order: np.ndarray,
    formats,
    label_field: str | None,
    mapper: Mapper,
    workers: int = 1,
    rows_per_part: int | None = None,
) -> tuple[list[str], dict]:
    """`write_ordered` with the serialisation done by `mapper` tasks; returns (file names, info).

    The files equal the local writer's: ordered.jsonl byte for byte, ordered.parquet
    read back as the same table. Counts are checked: rows per part add up to the
    order, the JSONL size to the parts' bytes, the Parquet file's rows to the order.
    """
    from . import write_ordered

    unknown = [f for f in formats if f not in DOC_FORMATS]
    if unknown:
        raise ValueError(f"unknown output format(s) {unknown} (available: {', '.join(DOC_FORMATS)})")
    run_dir = Path(run_dir)
    order = np.asarray(order)
    n = len(order)
    batch = _batch()
    bounds = shard_bounds(n, workers, rows_per_part, batch)
    if not bounds or not formats:  # nothing to share out
        return write_ordered(run_dir, store, order, formats, label_field), {"parts": 0}
    parts = run_dir / PARTS_DIR
    shutil.rmtree(parts, ignore_errors=True)  # leftovers of a crashed run
    parts.mkdir()
    store_dir = str(store.dir)
    want_jsonl, want_pq = "jsonl" in formats, "parquet" in formats
    written: list[str] = []
    secs: dict[str, float] = {}
    t = time.perf_counter()
    try:
        args = [
            (store_dir, np.ascontiguousarray(order[a:b]), a, label_field,
             str(_part(parts, k, "jsonl")) if want_jsonl else None,
             str(_part(parts, k, "parquet")) if want_pq else None, batch)
            for k, (a, b) in enumerate(bounds)
        ]
        got: dict[int, tuple] = dict(mapper(jsonl_shard, args))
        t = _lap(secs, "jsonl_parts", t)
        rows = [got[k][0] for k in range(len(bounds))]
        if sum(rows) != n or any(r != b - a for r, (a, b) in zip(rows, bounds)):
            raise RuntimeError(f"write: parts hold {sum(rows)} rows, the order {n}")
        if want_jsonl:
            path = run_dir / "ordered.jsonl"
            tmp = path.with_name(path.name + ".tmp")
            fh = open(tmp, "wb")
            for k in range(len(bounds)):
                with open(_part(parts, k, "jsonl"), "rb") as src:
                    shutil.copyfileobj(src, fh, 1 << 22)
            size = fh.tell()
            expect = sum(got[k][1] for k in range(len(bounds)))
            if size != expect:
                fh.close()
                raise RuntimeError(f"write: ordered.jsonl has {size} bytes, its parts {expect}")
            _fsync_replace(tmp, path, fh)
            written.append(path.name)
            t = _lap(secs, "jsonl_concat", t)
        if want_pq:
            written.append(_assemble_parquet(run_dir / "ordered.parquet", parts, bounds, order, store_dir, label_field,
                                             [got[k] for k in range(len(bounds))], mapper, batch, secs))
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return written, {"parts": len(bounds), "rows_per_part": bounds[0][1] - bounds[0][0], "phase_seconds": secs}


def _lap(secs: dict, name: str, t: float) -> float:
    now = time.perf_counter()
    secs[name] = round(now - t, 3)
    return now


def _assemble_parquet(path: Path, parts: Path, bounds, order, store_dir: str, label_field, got, mapper: Mapper, batch: int, secs: dict) -> str:
    """Round 2 (Parquet parts not already written with the unified schema), then their row groups copied into one file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = None
    for g in got:  # in order: field order = first appearance, as in the local writer
        schema = g[2] if schema is None else pa.unify_schemas([schema, g[2]], promote_options="permissive")
    redo = [k for k, g in enumerate(got) if not (g[3] and g[2].equals(schema))]
    args = [(store_dir, np.ascontiguousarray(order[bounds[k][0]:bounds[k][1]]), bounds[k][0], label_field, schema,
             str(_part(parts, k, "parquet")), batch) for k in redo]
    t = time.perf_counter()
    rows = sum(r for _, r in mapper(parquet_shard, args)) + sum(got[k][0] for k in range(len(got)) if k not in set(redo))
    t = _lap(secs, "parquet_parts", t)
    secs["parquet_parts_rewritten"] = len(redo)
    n = bounds[-1][1]
    if rows != n:
        raise RuntimeError(f"write: Parquet parts hold {rows} rows, the order {n}")
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, schema) as w:
        for k in range(len(bounds)):
            pf = pq.ParquetFile(_part(parts, k, "parquet"))
            if pf.metadata.num_rows != bounds[k][1] - bounds[k][0]:
                raise RuntimeError(f"write: Parquet part {k} holds {pf.metadata.num_rows} rows, its shard {bounds[k][1] - bounds[k][0]}")
            for g in range(pf.num_row_groups):
                w.write_table(pf.read_row_group(g))
    total = pq.ParquetFile(tmp).metadata.num_rows
    if total != n:
        raise RuntimeError(f"write: ordered.parquet has {total} rows, the order {n}")
    os.replace(tmp, path)
    _lap(secs, "parquet_assemble", t)
    return path.name
