"""Packing as tasks per range of contexts, joined by the driver: the same files, byte for byte,
as one pass, read back by each format's own reader (megatron-core, pyarrow, numpy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contextsort import pack as pack_module
from contextsort.formats.contexts import shard_layout
from contextsort.formats.contexts_parallel import PARTS_DIR, task_bounds
from contextsort.formats.megatron import MegatronReader
from contextsort.pack import TokenStream, pack_contexts

from test_pack import small_run  # noqa: F401
from test_remote import local_corpus  # noqa: F401

ALL = ["megatron", "parquet", "numpy"]


def reversed_mapper(fn, args_list):
    """Runs the tasks last first: the join must not depend on the order tasks finish in."""
    args = list(args_list)
    for i in reversed(range(len(args))):
        yield i, fn(*args[i])


def pack_dir(run_dir: Path, out: Path, **kw) -> dict:
    return pack_contexts(TokenStream.open(run_dir / "tokens"), np.load(run_dir / "order.npy"), out,
                         emb=np.load(run_dir / "embeddings.npy"), formats=ALL, seed=3, **kw)


def files_of(packed: Path) -> dict[str, bytes]:
    """Every file of a packed folder but pack.json (it holds timings), by relative name."""
    return {str(p.relative_to(packed)): p.read_bytes() for p in sorted(packed.rglob("*"))
            if p.is_file() and p.name != "pack.json"}


def contexts_by_reader(packed: Path) -> dict[str, np.ndarray]:
    """The contexts in written order as each format's reader gives them."""
    import pyarrow.parquet as pq

    info = json.loads((packed / "pack.json").read_text())
    L, dt = info["context_length"], np.dtype(info["dtype"])
    prefixes = sorted({f.rsplit(".", 1)[0] for f in info["files"]["megatron"]})
    got = {"megatron": np.concatenate([np.stack(list(MegatronReader(packed / p))) for p in prefixes]),
           "numpy": np.concatenate([np.memmap(packed / f, dtype=dt, mode="r").reshape(-1, L)
                                    for f in info["files"]["numpy"] if f.endswith(".bin")]),
           "parquet": np.concatenate([np.stack(pq.read_table(packed / f)["input_ids"].to_numpy(zero_copy_only=False))
                                      for f in info["files"]["parquet"]])}
    try:
        mid = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    except pytest.skip.Exception:
        return got
    got["megatron-core"] = np.concatenate([np.stack([np.array(d[i]) for i in range(len(d))])
                                           for d in (mid.IndexedDataset(str(packed / p)) for p in prefixes)])
    return got


def test_task_bounds_stay_on_the_grid_and_inside_shards():
    layout = shard_layout(100, 10, np.uint16, 10 * 2 * 30)  # 30 contexts per shard -> 4 shards
    bounds = task_bounds(layout, workers=2, contexts_per_task=20, batch=8)  # 20 -> 24 (batch grid)
    assert bounds[0][0] == 0 and bounds[-1][1] == 100
    assert all(b0[1] == b1[0] for b0, b1 in zip(bounds, bounds[1:]))  # contiguous, nothing lost
    shard_starts = {layout.bounds(s)[0] for s in range(layout.n_shards)}
    for a, b in bounds:
        assert a // 30 == (b - 1) // 30  # inside one shard
        assert a % 8 == 0 or a in shard_starts  # on the batch grid or at a shard start
    assert {a for a, _ in bounds} >= shard_starts


@pytest.mark.parametrize("mode,shard_size,per_task", [
    ("concat", None, 9),  # one output shard written by several tasks: every part joined
    ("boundary", 50 * 2 * 7, 5),  # 7-context shards, 8-context tasks: some renamed, some joined
    ("boundary", 50 * 2 * 16, 16),  # tasks equal to shards: renamed only
])
def test_tasks_write_the_same_files_as_one_pass(small_run, tmp_path, monkeypatch, mode, shard_size, per_task):  # noqa: F811
    monkeypatch.setattr(pack_module, "BATCH_CONTEXTS", 8)  # many batches, so the grid matters
    run_dir = small_run.run_dir
    kw = dict(context_length=50, mode=mode, shard_bytes=shard_size)
    one = pack_dir(run_dir, tmp_path / "one", **kw)
    many = pack_dir(run_dir, tmp_path / "many", mapper=reversed_mapper, workers=3, contexts_per_task=per_task, **kw)
    assert one["write_tasks"] == 0 and many["write_tasks"] > 2
    assert many["files"] == one["files"] and many["counts"] == one["counts"]
    a, b = files_of(tmp_path / "one"), files_of(tmp_path / "many")
    assert sorted(a) == sorted(b)
    assert [n for n in a if a[n] != b[n]] == []  # byte for byte, .idx, .npz and Parquet included
    assert not (tmp_path / "many" / PARTS_DIR).exists() and not list((tmp_path / "many").rglob("*.tmp"))
    ra, rb = contexts_by_reader(tmp_path / "one"), contexts_by_reader(tmp_path / "many")
    n = one["counts"]["contexts"]
    for name, ctx in rb.items():
        assert n > 40 and ctx.shape == (n, 50) and np.array_equal(ctx, ra[name]) and np.array_equal(ctx, ra["numpy"]), name


@pytest.mark.ray
def test_ray_packs_and_writes_removed_as_tasks(ray_local, local_corpus, tmp_path):  # noqa: F811
    """Under --engine ray, packing and removed.jsonl run as Ray tasks (the manifest says so, with
    the nodes that did them) and give the files one pass gives for the same order."""
    import contextsort
    from contextsort.formats.removed import write_removed

    d, n_records = local_corpus
    res = contextsort.run([d], tmp_path / "run", engine="ray", similarity="dense", context_length=256,
                          pack_format=ALL, report=False)
    run = res.run_dir
    man = json.loads((run / "manifest.json").read_text())
    pack, write = man["stages"]["pack"], man["stages"]["write"]
    assert pack["engine"] == write["engine"] == "ray" and pack["node_ids"] and write["node_ids"]
    assert pack["write_tasks"] >= 2 and write["removed_parts"] >= 2 and res.counts["adds_up"]
    one = pack_contexts(TokenStream.open(run / "tokens"), res.order, tmp_path / "one", context_length=256,
                        emb=np.load(run / "embeddings.npy"), formats=ALL, seed=man["config"]["seed"])
    a, b = files_of(tmp_path / "one"), files_of(run / "packed")
    assert sorted(a) == sorted(b) and [n for n in a if a[n] != b[n]] == []
    assert one["counts"]["contexts"] == pack["contexts"] > 512
    n, _ = write_removed(tmp_path / "removed.jsonl", run / "store", "id", np.load(run / "dup_of.npy"),
                         np.load(run / "embed_valid.npy"), np.load(run / "knn_ids.npy"), np.load(run / "knn_sims.npy"),
                         run / "rejects.jsonl")
    assert (tmp_path / "removed.jsonl").read_bytes() == (run / "removed.jsonl").read_bytes()
    assert n == res.counts["duplicates"] + res.counts["rejected"] and res.counts["kept"] + n == n_records
