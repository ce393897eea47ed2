"""removed.jsonl: every record that is not in the output, with its reason, in one fixed
order: duplicates (store order, with the id they duplicate and their similarity), documents
whose embedding is zero or NaN, then ingest's rejects.

The driver works out from arrays which documents are removed and each duplicate's
similarity (`removed_entries`). The JSON lines, which need the records' ids from the
store, are made by tasks over ranges of those entries (and one task for the rejects), each
into its own part; the driver concatenates the parts. One pass and tasks write the same
bytes, since both use `removed_lines` and `reject_lines`.
"""

from __future__ import annotations

import json
import shutil
from json.encoder import encode_basestring  # what the encoder uses for strings when ensure_ascii=False
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..atomic import atomic_write, commit
from ..arrow_ingest import read_json_lines
from ..corpus import DocStore
from . import JSONL_ENCODER
from ..rowfile import row_source

PARTS_DIR = ".removed.parts"
BAD_EMBEDDING = "rejected: embedding is zero or NaN"
BAD_EMBEDDING_JSON = encode_basestring(BAD_EMBEDDING)
LINES_BATCH = 8192  # removed entries whose ids are read from the store at once

Mapper = Callable[[Callable, Iterable[tuple]], Iterator[tuple[int, object]]]


def duplicate_similarities(ids: np.ndarray, sims: np.ndarray, i: np.ndarray, j: np.ndarray,
                           chunk: int = 1 << 20) -> np.ndarray:
    """Similarity of each pair (i, j) where j is in i's kNN list (first hit), else where i is in
    j's, else NaN (neither lists the other). `ids`/`sims`: arrays or `RowFile`s (only the rows
    of the pairs are read, in file order, rather than touched at random through a map)."""
    ids, sims = row_source(ids), row_source(sims)
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    out = np.full(len(i), np.nan)
    for a in range(0, len(i), chunk):
        ii, jj = i[a:a + chunk], j[a:a + chunk]
        got = np.full(len(ii), np.nan)
        for x, y in ((ii, jj), (jj, ii)):
            todo = np.flatnonzero(np.isnan(got))
            hit = ids.take(x[todo]) == y[todo, None]
            has = hit.any(axis=1)
            rows = todo[has]
            got[rows] = sims.take(x[rows])[np.arange(len(rows)), hit[has].argmax(axis=1)]
        out[a:a + chunk] = got
    return out


def removed_entries(dup_of: np.ndarray, valid: np.ndarray, ids: np.ndarray, sims: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(document, document it duplicates or -1 for a bad embedding, similarity or NaN), in removed.jsonl order."""
    dups = np.flatnonzero(dup_of >= 0)
    bad = np.flatnonzero(~valid & (dup_of < 0))
    of = dup_of[dups].astype(np.int64)
    index = np.concatenate([dups, bad]).astype(np.int64)
    dup = np.concatenate([of, np.full(len(bad), -1, np.int64)])
    sim = np.concatenate([duplicate_similarities(ids, sims, dups, of), np.full(len(bad), np.nan)])
    return index, dup, sim


def json_line(row: dict) -> str:
    """One JSONL line as every contextsort JSONL file writes it (UTF-8, non-ASCII kept)."""
    return JSONL_ENCODER.encode(row) + "\n"


def json_value(value) -> str:
    """A value as `json_line` writes it inside a row (ids: strings and integers, the common
    cases, without the encoder's set-up per call)."""
    if type(value) is str:
        return encode_basestring(value)
    if type(value) is int:
        return int.__repr__(value)
    return JSONL_ENCODER.encode(value)


def id_type(store: DocStore, id_field: str):
    """The Arrow type of the id field when every stored id is a string or every one an integer, else None."""
    import pyarrow as pa

    kinds = store.field_types().kinds.get(id_field) or set()
    if kinds == {"str"}:
        return pa.string()
    if kinds and kinds <= {"int", "int53"}:
        return pa.int64()
    return None


def stored_ids(store: DocStore, wanted: np.ndarray, id_field: str, arrow_type) -> list:
    """The id of each record at `wanted` (its position where it has none), as `json.loads` gives it.

    The records are parsed by pyarrow.json for their id alone (a record is most often its
    text: decoding each in Python was most of this file's time); a batch it refuses or where
    an id is missing is decoded record by record."""
    import pyarrow as pa
    import pyarrow.json as pj

    raws = store.raw_records(wanted)
    if arrow_type is not None and raws:
        # a record may end in LF already: pyarrow skips blank lines; a repeated key is refused (json.loads keeps the last)
        got = read_json_lines(b"\n".join(raws), pj.ParseOptions(explicit_schema=pa.schema([(id_field, arrow_type)]),
                                                                   unexpected_field_behavior="ignore"))
        if got is not None and got.num_rows == len(raws) and got.column(id_field).null_count == 0:
            return got.column(id_field).to_pylist()
    return [json.loads(raw).get(id_field, d) for d, raw in zip(wanted.tolist(), raws)]


def removed_lines(store: DocStore, id_field: str, index: np.ndarray, dup: np.ndarray, sim: np.ndarray) -> Iterator[str]:
    """The lines of removed documents (duplicates and bad embeddings). Their ids are read from the
    store a batch of entries at a time, in file order (`DocStore.raw_records`)."""
    arrow_type = id_type(store, id_field) if len(index) else None
    for a in range(0, len(index), LINES_BATCH):
        ii, jj, ss = index[a:a + LINES_BATCH], dup[a:a + LINES_BATCH], sim[a:a + LINES_BATCH]
        wanted = np.unique(np.concatenate([ii, jj[jj >= 0]]).astype(np.int64))
        ids = dict(zip(wanted.tolist(), stored_ids(store, wanted, id_field, arrow_type)))
        # the lines json_line would write for {"id", "reason"[, "duplicate_of", "similarity"]}, made directly
        for i, j, s in zip(ii.tolist(), jj.tolist(), ss.tolist()):
            if j < 0:
                yield '{"id": ' + json_value(ids[i]) + ', "reason": ' + BAD_EMBEDDING_JSON + "}\n"
            else:
                yield ('{"id": ' + json_value(ids[i]) + ', "reason": "duplicate", "duplicate_of": ' + json_value(ids[j])
                       + ', "similarity": ' + ("null" if s != s else float.__repr__(round(s, 6))) + "}\n")


def reject_lines(rejects_path: str | Path) -> Iterator[str]:
    """Ingest's rejects, each with its reason prefixed by "rejected: "."""
    with open(rejects_path, "rb") as fh:
        for line in fh:
            rej = json.loads(line)
            rej["reason"] = "rejected: " + rej["reason"]
            yield json_line(rej)


def write_lines_part(lines: Iterator[str], out: str) -> tuple[int, int]:
    """Lines into `out` (tmp + rename); returns (lines, bytes)."""
    rows = nbytes = 0
    with atomic_write(out, "wb") as fh:
        for line in lines:
            data = line.encode("utf-8")
            fh.write(data)
            rows += 1
            nbytes += len(data)
    return rows, nbytes


def removed_part(store_dir: str, id_field: str, index: np.ndarray, dup: np.ndarray, sim: np.ndarray,
                 out: str) -> tuple[int, int]:
    """Task: the lines of a range of removed documents into a part file."""
    return write_lines_part(removed_lines(DocStore(Path(store_dir)), id_field, index, dup, sim), out)


def rejects_part(rejects_path: str, out: str) -> tuple[int, int]:
    """Task: ingest's rejects into a part file."""
    return write_lines_part(reject_lines(rejects_path), out)


def write_removed(path: Path, store_dir: Path, id_field: str, dup_of: np.ndarray, valid: np.ndarray, ids: np.ndarray,
                  sims: np.ndarray, rejects_path: Path, mapper: Mapper | None = None, workers: int = 1,
                  rows_per_part: int | None = None) -> tuple[int, int]:
    """Write removed.jsonl; returns (rows, parts). With `mapper` and `workers` > 1 the lines are
    made by tasks (module doc), else in one pass (parts 0)."""
    path = Path(path)
    index, dup, sim = removed_entries(dup_of, valid, ids, sims)
    if mapper is None or workers <= 1:
        store = DocStore(Path(store_dir))
        with atomic_write(path, "w", encoding="utf-8") as fh:
            n = 0
            for lines in (removed_lines(store, id_field, index, dup, sim), reject_lines(rejects_path)):
                for line in lines:
                    fh.write(line)
                    n += 1
        return n, 0
    parts = path.parent / PARTS_DIR
    shutil.rmtree(parts, ignore_errors=True)  # leftovers of a crashed run
    parts.mkdir()
    m = len(index)
    per = max(1, rows_per_part or -(-m // workers))
    ranges = [(a, min(m, a + per)) for a in range(0, m, per)]
    part = [str(parts / f"part-{k:05d}.jsonl") for k in range(len(ranges) + 1)]
    tasks: list[tuple[Callable, tuple]] = [
        (removed_part, (str(store_dir), id_field, index[a:b], dup[a:b], sim[a:b], part[k])) for k, (a, b) in enumerate(ranges)]
    tasks.append((rejects_part, (str(rejects_path), part[-1])))
    try:
        got = dict(mapper(run_task, tasks))
        rows = sum(got[k][0] for k in range(len(tasks)))
        expect_rows = [b - a for a, b in ranges]
        if [got[k][0] for k in range(len(ranges))] != expect_rows:
            raise RuntimeError(f"write: removed.jsonl parts hold {[got[k][0] for k in range(len(ranges))]} rows, expected {expect_rows}")
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            for p in part:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, fh, 1 << 22)
            size = fh.tell()
        if size != sum(got[k][1] for k in range(len(tasks))):
            raise RuntimeError(f"write: removed.jsonl has {size} bytes, its parts {sum(got[k][1] for k in range(len(tasks)))}")
        commit(tmp, path)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return rows, len(tasks)


def run_task(fn: Callable, args: tuple):
    """One mapped call that runs `fn(*args)`: lets one map carry two kinds of task."""
    return fn(*args)
