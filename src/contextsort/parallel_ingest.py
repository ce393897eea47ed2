"""Ingest in pieces: each piece of the input is read by one task into a store shard, and
the driver joins the shards, in input order, into the one document store.

Pieces (`corpus.plan_pieces`) are whole files, byte ranges of large plain JSON-lines
files (cut just after an LF, so no line is split), runs of a Parquet file's row groups,
and runs of a folder's .txt files. A task knows only its piece: it numbers the lines of
a byte range from the range's start, and counts the records it read from zero. The
driver takes the shards in order and puts both in place (each shard reports how many
lines and records it read): line numbers become the file's true line numbers, and a
record that had no id gets its position among all records read, exactly as one
sequential reader gives them. Only then are duplicate ids looked for, across all
shards. So the store, the rejects and the per-input counts are the same however the
input is cut (tested: 1 piece against many), and a bad record costs only itself.

In strict mode a task stops at its first bad record and returns it; the driver raises
the first one in input order, with its true line number.

Shards live in `PARTS_DIR` under the run directory (on a cluster: storage every node
can write, as for the other stages) and are removed as they are joined.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .corpus import (
    CorpusReader,
    DocStoreWriter,
    InputCount,
    InputError,
    Piece,
    RecordBlock,
    RecordError,
    Reject,
    parse_input_spec,
    plan_pieces,
)
from .prefetch import prefetched

PARTS_DIR = ".ingest.parts"
MIN_PIECE_BYTES = 32 << 20  # a byte range smaller than this is not worth a task
MAX_PIECE_BYTES = 256 << 20  # a shard the driver joins stays small
MIN_PIECE_ROWS = 1 << 16


@dataclass(frozen=True)
class ReadOptions:
    """The run's field names and strictness, as every task needs them."""

    text_field: str = "text"
    id_field: str = "id"
    label_field: str | None = "label"
    strict: bool = False
    columnar: bool = True  # runs of plain records through the Arrow fast paths (arrow_ingest.py); same store either way
    pipeline: bool = True  # read the next block in a thread while this one is stored (prefetch.py); same store either way


@dataclass
class IngestResult:
    """What the driver joined: the closed store's writer, every reject (in input order), per-input counts."""

    writer: DocStoreWriter
    rejects: list[Reject]
    counts: list[InputCount]
    records_read: int
    pieces: int
    piece_kinds: dict = field(default_factory=dict)


def piece_sizes(paths: Iterable[str], workers: int) -> tuple[int | None, int | None]:
    """(bytes, rows) per piece for `workers` tasks at once: no cutting for one worker; else about
    two pieces per worker, never smaller than MIN_PIECE_BYTES / MIN_PIECE_ROWS nor larger than MAX_PIECE_BYTES."""
    if workers <= 1:
        return None, None
    total = 0
    for p in paths:
        path = parse_input_spec(p).path
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    per = min(MAX_PIECE_BYTES, max(MIN_PIECE_BYTES, total // (2 * workers)))
    return per, max(MIN_PIECE_ROWS, per // 1024)


def ingest_piece(spec: str, piece: Piece, opts: ReadOptions, shard_dir: str) -> dict:
    """Task: read one piece into a store shard (its rejects in the shard's rejects.jsonl).

    Returns the records and lines it read, and in strict mode its first bad record.
    """
    reader = CorpusReader([spec], opts.text_field, opts.id_field, opts.label_field, opts.strict, blocks=opts.columnar)
    writer = DocStoreWriter(Path(shard_dir), opts.label_field, opts.id_field)
    rejects: list[dict] = []
    records = 0
    error = None
    items = reader.read_piece(piece)
    try:
        for item in prefetched(items, big=RecordBlock) if opts.pipeline else items:
            if isinstance(item, RecordBlock):
                records += len(item)
                writer.add_block(item)
                continue
            records += 1
            if isinstance(item, Reject):
                rejects.append(item.to_json())
            else:
                writer.add(item)
    except RecordError as e:
        error = {"source": e.source, "line": e.line, "field": e.field, "reason": e.reason}
    writer.save_shard()
    if error is None and reader.position != records:
        raise RuntimeError(f"ingest: piece {piece} read {reader.position} records but yielded {records}")
    with open(Path(shard_dir) / "rejects.jsonl", "w", encoding="utf-8") as fh:
        for r in rejects:
            fh.write(json.dumps(r, default=str) + "\n")
    return {"records": records, "documents": writer.n, "rejected": len(rejects), "lines": reader.lines_read, "error": error}


def ingest_inputs(
    inputs: list[str],
    store_dir: Path,
    parts_dir: Path,
    opts: ReadOptions = ReadOptions(),
    exclude: Iterable[str | os.PathLike] = (),
    mapper: Callable | None = None,
    piece_bytes: int | None = None,
    rows_per_piece: int | None = None,
    source_name: Callable[[str], str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Read `inputs` piece by piece (`mapper(fn, args, ordered=True)`: an engine's map; None: in
    this process) and join the shards into the store at `store_dir`.

    `piece_bytes` / `rows_per_piece` cut large files (None: whole files). `source_name`
    maps a file read to the name stored and reported (a URL for a downloaded copy).
    """
    if mapper is None and piece_bytes is None and rows_per_piece is None:
        return ingest_here(inputs, store_dir, opts, exclude, source_name, progress)
    specs = [parse_input_spec(p) for p in inputs]
    pieces = plan_pieces(specs, exclude, piece_bytes, rows_per_piece)
    if len(pieces) < 2:  # nothing to share out: a task would only add a shard to write and join
        return ingest_here(inputs, store_dir, opts, exclude, source_name, progress)
    parts_dir = Path(parts_dir)
    shutil.rmtree(parts_dir, ignore_errors=True)  # leftovers of a crashed run
    parts_dir.mkdir(parents=True)
    name = source_name or (lambda s: s)
    args = [(specs[p.input].spec, dataclasses.replace(p, input=0), opts, str(parts_dir / f"piece-{k:06d}"))
            for k, p in enumerate(pieces)]
    if mapper is None:
        mapper = _in_process
    writer = DocStoreWriter(Path(store_dir), opts.label_field, opts.id_field)
    counts = [InputCount(s.spec) for s in specs]
    rejects: list[Reject] = []
    position = 0  # records read before the current piece
    file_lines = 0  # lines of the current file before the current piece
    kinds: dict[str, int] = {}
    try:
        for k, res in mapper(ingest_piece, args, ordered=True):
            piece = pieces[k]
            kinds[piece.kind] = kinds.get(piece.kind, 0) + 1
            if piece.first_piece_of_file:
                file_lines = 0
            offset = file_lines if piece.kind == "lines" else 0
            file_lines += res["lines"]
            if res["error"] is not None:
                e = res["error"]
                raise RecordError(name(e["source"]), e["line"] + offset if e["line"] else 0, e["field"], e["reason"])
            shard = Path(args[k][3])
            writer.append_shard(shard, offset, position, name)
            with open(shard / "rejects.jsonl", encoding="utf-8") as fh:
                for line in fh:
                    r = json.loads(line)
                    rejects.append(Reject(name(r["source"]), r["line"] + offset if r["line"] else 0, r["id"], r["reason"]))
            shutil.rmtree(shard, ignore_errors=True)
            position += res["records"]
            count = counts[piece.input]
            count.records += res["records"]
            count.documents += res["documents"]
            count.rejected += res["rejected"]
            if progress is not None:
                progress(res["records"])
            last_of_input = k + 1 == len(pieces) or pieces[k + 1].input != piece.input
            if opts.strict and last_of_input and count.documents == 0:
                raise InputError(f"{count.input}: input yielded no document ({count.records} records read)")
        rejects.extend(writer.close(strict=opts.strict))  # records whose id was already used
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    return IngestResult(writer, rejects, counts, position, len(pieces), kinds)


def ingest_here(inputs: list[str], store_dir: Path, opts: ReadOptions = ReadOptions(), exclude: Iterable[str | os.PathLike] = (),
                source_name: Callable[[str], str] | None = None, progress: Callable[[int], None] | None = None) -> IngestResult:
    """The whole input read in this process straight into the store, file by file (no shards to
    write and join): what one worker does, with the same store, rejects and counts."""
    reader = CorpusReader(inputs, opts.text_field, opts.id_field, opts.label_field, opts.strict, exclude=exclude, blocks=opts.columnar)
    writer = DocStoreWriter(Path(store_dir), opts.label_field, opts.id_field)
    name = source_name or (lambda s: s)
    rejects: list[Reject] = []
    n = 0
    for item in prefetched(reader, big=RecordBlock) if opts.pipeline else reader:
        if isinstance(item, RecordBlock):
            if source_name is not None:
                item.source = name(item.source)
            writer.add_block(item)
            if progress is not None and (n + len(item)) // 4096 > n // 4096:
                progress(((n + len(item)) // 4096 - n // 4096) * 4096)
            n += len(item)
            continue
        n += 1
        if isinstance(item, Reject):
            item.source = name(item.source)
            rejects.append(item)
        else:
            if source_name is not None:
                item.source = name(item.source)
            writer.add(item)
        if progress is not None and n % 4096 == 0:
            progress(4096)
    if progress is not None:
        progress(n % 4096)
    rejects.extend(writer.close(strict=opts.strict))
    pieces = len(plan_pieces(reader.inputs, exclude))
    return IngestResult(writer, rejects, reader.counts, n, pieces, {})


def _in_process(fn: Callable, args_list: list[tuple], ordered: bool = True):
    for k, args in enumerate(args_list):
        yield k, fn(*args)
