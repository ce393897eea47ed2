"""Parallel writing of the ordered documents (engine ray): shards serialised by workers, assembled by the driver.

The order is cut into contiguous shards of a multiple of BATCH rows, so every
shard cuts the order on the local writer's batch grid and row groups fall where the
local writer puts them. The schema policy (`schema.output_schema`: position column,
Parquet schema, fields written as JSON text) is decided once by the driver from what
ingest saw, and every task writes with it, so the parts agree without a second round.
Each shard is serialised by one task with the same `ordered_batch` as `write_ordered`: a
JSONL part and a Parquet part.

The driver then concatenates the JSONL parts byte for byte (identical to the local
file) and copies the Parquet parts' row groups into one `ordered.parquet`. Parts
live in `RUN_DIR/.ordered.parts/` (each written as tmp + rename) and are removed at
the end; the final files are tmp + rename as elsewhere. On a multi-node cluster
the run directory must be on storage every node can write (as for embedding).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..corpus import DocStore
from . import DOC_FORMATS, ordered_batch
from .schema import OutputSchema, output_schema
from ..atomic import commit

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
    fh.close()
    commit(tmp, path)


def _batch() -> int:
    from . import BATCH  # read at call time: tests shrink it

    return BATCH


def write_shard(store_dir: str, part_order: np.ndarray, base: int, label_field: str | None, policy: OutputSchema,
                out: str | None, pq_out: str | None, batch: int):
    """Task: one pass over the shard's records, writing its JSONL and/or Parquet part. Returns (rows, JSONL bytes)."""
    store = DocStore(Path(store_dir))
    m = len(part_order)
    nbytes = 0
    fh = open(out + ".tmp", "wb") if out else None
    pw = None
    try:
        if pq_out is not None:
            import pyarrow.parquet as pq

            pw = pq.ParquetWriter(pq_out + ".tmp", policy.schema)
        for start in range(0, m, batch):
            data, table = ordered_batch(store, part_order, policy, label_field, start, min(m, start + batch), base, pw is not None)
            if fh is not None:
                fh.write(data)
                nbytes += len(data)
            if pw is not None:
                pw.write_table(table)
        if fh is not None:
            _fsync_replace(Path(out + ".tmp"), Path(out), fh)
            fh = None
        if pw is not None:
            pw.close()
            pw = None
            commit(pq_out + ".tmp", pq_out)
    finally:
        if fh is not None:
            fh.close()
        if pw is not None:
            pw.close()
    return m, nbytes


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
        files, info = write_ordered(run_dir, store, order, formats, label_field)
        return files, {"parts": 0, **info}
    policy = output_schema(store, label_field)
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
            (store_dir, np.ascontiguousarray(order[a:b]), a, label_field, policy,
             str(_part(parts, k, "jsonl")) if want_jsonl else None,
             str(_part(parts, k, "parquet")) if want_pq else None, batch)
            for k, (a, b) in enumerate(bounds)
        ]
        got: dict[int, tuple] = dict(mapper(write_shard, args))
        t = _lap(secs, "parts", t)
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
            written.append(_assemble_parquet(run_dir / "ordered.parquet", parts, bounds, policy))
            t = _lap(secs, "parquet_assemble", t)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    info = policy.info() if want_pq else {"position_field": policy.position_field}
    return written, {"parts": len(bounds), "rows_per_part": bounds[0][1] - bounds[0][0], "phase_seconds": secs, **info}


def _lap(secs: dict, name: str, t: float) -> float:
    now = time.perf_counter()
    secs[name] = round(now - t, 3)
    return now


def _assemble_parquet(path: Path, parts: Path, bounds, policy: OutputSchema) -> str:
    """The Parquet parts' row groups copied, in order, into one file; row counts checked."""
    import pyarrow.parquet as pq

    n = bounds[-1][1]
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, policy.schema) as w:
        for k in range(len(bounds)):
            pf = pq.ParquetFile(_part(parts, k, "parquet"))
            if pf.metadata.num_rows != bounds[k][1] - bounds[k][0]:
                raise RuntimeError(f"write: Parquet part {k} holds {pf.metadata.num_rows} rows, its shard {bounds[k][1] - bounds[k][0]}")
            for g in range(pf.num_row_groups):
                w.write_table(pf.read_row_group(g))
    total = pq.ParquetFile(tmp).metadata.num_rows
    if total != n:
        raise RuntimeError(f"write: ordered.parquet has {total} rows, the order {n}")
    commit(tmp, path)
    return path.name
