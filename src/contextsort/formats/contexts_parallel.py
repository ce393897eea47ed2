"""Parallel writing of packed contexts (engine ray): ranges of the written contexts
serialised by tasks, joined by the driver.

The driver plans the contexts (lengths only) and cuts the written order into task
ranges. A range never crosses an output shard, and its ends lie on the grid of
`BATCH_CONTEXTS` written positions, so each task makes the same batches, and Parquet
row groups, as one pass over all contexts. A task reopens the token stream, gathers
its contexts (`pack.gather_batches`) and writes them with the ordinary format writers
into its own folder; files are named by their output shard, as one pass names them.

The driver then joins, shard by shard: a shard written by one task is renamed into
place; one written by several has its parts joined: token files (``.bin``)
concatenated byte for byte, the Megatron ``.idx`` rewritten from the parts' sequence
lengths (pointers are global offsets into the joined ``.bin``), the ``.npz`` indexes
concatenated, the Parquet row groups copied in order. The result equals one pass's
files byte for byte. Parts live in ``<packed>.tmp/.parts`` and go before the folder
is committed. On a multi-node cluster the run directory must be on storage every node
can write (as for embedding and the ordered output).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..atomic import commit
from .contexts import IndexSidecar, ShardLayout, get_context_writer, load_index

PARTS_DIR = ".parts"

Mapper = Callable[[Callable, Iterable[tuple]], Iterator[tuple[int, object]]]


def task_bounds(layout: ShardLayout, workers: int, contexts_per_task: int | None = None,
                batch: int | None = None) -> list[tuple[int, int]]:
    """Written ranges [a, b) for tasks: about n / workers contexts (or `contexts_per_task`),
    rounded up to the batch grid, and cut again at every output shard boundary."""
    from ..pack import BATCH_CONTEXTS

    batch = batch or BATCH_CONTEXTS
    n = layout.n_contexts
    if n <= 0:
        return []
    per = -(-n // max(1, workers)) if contexts_per_task is None else max(1, int(contexts_per_task))
    per = -(-per // batch) * batch
    cuts = set(range(0, n, per)) | {layout.bounds(s)[0] for s in range(layout.n_shards)} | {n}
    cuts = sorted(c for c in cuts if 0 <= c <= n)
    return list(zip(cuts[:-1], cuts[1:]))


def write_context_part(stream_dir: str, n_tokens: int, spec, formats: list[str], context_length: int, dtype: str,
                       pad_id: int, layout: ShardLayout, vocab_size: int, out_dir: str,
                       batch_contexts: int) -> tuple[int, dict[str, list[str]]]:
    """Task: gather and write the contexts of `spec` in every format into `out_dir`.

    Returns (contexts written, {format: files relative to out_dir})."""
    import json

    from ..pack import gather_batches, open_tokens

    meta = json.loads((Path(stream_dir) / "meta.json").read_text())
    tokens = open_tokens(Path(stream_dir), meta, n_tokens)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writers = [get_context_writer(f, out, context_length, np.dtype(dtype), layout, vocab_size=vocab_size, start=spec.first)
               for f in formats]
    for batch in gather_batches(tokens, spec, context_length, pad_id, dtype, batch_contexts):
        for w in writers:
            w.write(batch)
    return len(spec), {f: w.close() for f, w in zip(formats, writers)}


def write_contexts_parallel(out_dir: Path, stream_dir: str, n_tokens: int, spec_of: Callable[[int, int], object],
                            formats: list[str], context_length: int, dtype, pad_id: int, layout: ShardLayout,
                            vocab_size: int, mapper: Mapper, workers: int, contexts_per_task: int | None = None,
                            progress: Callable[[int], None] | None = None) -> tuple[dict[str, list[str]], int]:
    """Write the contexts into `out_dir` as tasks (module doc); returns ({format: files}, tasks).

    `spec_of(a, b)` gives the `ContextSpec` of written contexts [a, b); specs are made as
    tasks are handed out, so the driver holds only those in flight."""
    from ..pack import BATCH_CONTEXTS

    out_dir = Path(out_dir)
    batch = BATCH_CONTEXTS  # read here and handed to the tasks: every process cuts on the same grid
    bounds = task_bounds(layout, workers, contexts_per_task, batch)
    parts = out_dir / PARTS_DIR
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    args = ((str(stream_dir), int(n_tokens), spec_of(a, b), list(formats), int(context_length), np.dtype(dtype).str,
             int(pad_id), layout, int(vocab_size), str(parts / f"{k:05d}"), batch) for k, (a, b) in enumerate(bounds))
    got: dict[int, tuple[int, dict]] = {}
    for k, result in mapper(write_context_part, args):
        got[k] = result
        if progress:
            progress(result[0])
    for k, (a, b) in enumerate(bounds):
        if got[k][0] != b - a:
            raise RuntimeError(f"pack: task {k} wrote {got[k][0]} contexts, its range {b - a}")
    files: dict[str, list[str]] = {f: [] for f in formats}
    for s in range(layout.n_shards):
        lo, hi = layout.bounds(s)
        ks = [k for k, (a, b) in enumerate(bounds) if lo <= a < hi]
        for f in formats:
            names = got[ks[0]][1][f]
            if any(got[k][1][f] != names for k in ks):
                raise RuntimeError(f"pack: the tasks of shard {s} wrote different {f} files")
            for rel in names:
                join_part([parts / f"{k:05d}" / rel for k in ks], out_dir / rel)
            files[f] += names
    shutil.rmtree(parts)
    return files, len(bounds)


def join_part(srcs: list[Path], dest: Path) -> None:
    """One output file from its parts, in order (renamed when there is one)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if len(srcs) == 1:
        os.replace(srcs[0], dest)
        return
    tmp = dest.with_name(dest.name + ".tmp")
    if dest.suffix == ".bin":
        with open(tmp, "wb") as fh:
            for p in srcs:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, fh, 1 << 22)
        commit(tmp, dest)
    elif dest.suffix == ".idx":
        join_megatron_index(srcs, dest)
    elif dest.suffix == ".npz":
        side = IndexSidecar()
        for p in srcs:
            z = load_index(p)
            side.length.append(z["length"])
            side.context.append(z["context"])
            side.offsets.append(z["doc_offsets"])
            side.positions.append(z["doc_positions"])
            side.counts.append(np.diff(z["doc_offsets_ptr"]))
        side.save(dest)
    elif dest.suffix == ".parquet":
        join_parquet(srcs, tmp)
        commit(tmp, dest)
    else:  # pragma: no cover - every writer's file kind is listed above
        raise ValueError(f"pack: no way to join parts of {dest.name}")


def join_megatron_index(srcs: list[Path], dest: Path) -> None:
    """The parts' ``.idx`` files as one: lengths concatenated, pointers recomputed as offsets
    into the joined ``.bin``, document indices shifted by the sequences before each part."""
    from .megatron import read_index, write_index

    idx = [read_index(p) for p in srcs]
    dtype = idx[0]["dtype"]
    if any(i["dtype"] != dtype for i in idx):
        raise RuntimeError(f"pack: the parts of {dest.name} disagree on the token type")
    lengths = np.concatenate([i["sequence_lengths"] for i in idx])
    docs, base = [], 0
    for i in idx:
        docs.append(np.asarray(i["document_indices"][:-1], dtype=np.int64) + base)
        base += len(i["sequence_lengths"])
    docs.append(np.array([base], dtype=np.int64))
    write_index(dest, lengths, np.concatenate(docs), dtype)


def join_parquet(srcs: list[Path], tmp: Path) -> None:
    """The parts' row groups copied, in order, into one Parquet file (the parts' schema, with
    list items named as the writer names them, "item": read back they are called "element")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    read = pq.read_schema(srcs[0])
    schema = pa.schema([pa.field(f.name, pa.list_(f.type.value_type)) if pa.types.is_list(f.type) else f for f in read])
    with pq.ParquetWriter(tmp, schema) as w:
        for p in srcs:
            pf = pq.ParquetFile(p)
            for g in range(pf.num_row_groups):
                w.write_table(pf.read_row_group(g).cast(schema))
