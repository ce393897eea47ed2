"""Scale-out: partitioned stages (engine-free) and the Ray engine on the BBC sample."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from contextsort.dedup import find_duplicates
from contextsort.distributed import PartitionParams, RaySession, RayUnavailable, local_mapper, partitioned_stages
from contextsort.graph import graph_from_knn, restrict_knn
from contextsort.neighbors import knn_graph
from contextsort.order import compute_order


def clustered(n: int, d: int = 32, clusters: int = 12, dups: int = 40, seed: int = 0):
    """Unit vectors around `clusters` centres, the last `dups` rows near-copies of random earlier rows."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    lab = rng.integers(0, clusters, n)
    x = centres[lab] + 0.6 * rng.standard_normal((n, d))
    src = rng.choice(n - dups, dups, replace=False)
    x[n - dups :] = x[src] + 1e-4 * rng.standard_normal((dups, d))
    lab[n - dups :] = lab[src]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), lab, src


def check_merged(res, n: int, valid=None):
    valid = np.ones(n, bool) if valid is None else valid
    kept = valid & (res.dup_of < 0)
    # the order is a permutation of exactly the kept documents
    assert np.array_equal(np.sort(res.order), np.flatnonzero(kept))
    # every duplicate points to a kept, valid document at a smaller position
    d = np.flatnonzero(res.dup_of >= 0)
    assert kept[res.dup_of[d]].all() and (res.dup_of[d] < d).all()
    # kNN ids are global positions of valid documents, never the document itself
    ok = res.ids >= 0
    assert (res.ids[ok] < n).all() and valid[res.ids[ok]].all()
    assert not (res.ids == np.arange(n)[:, None]).any()
    assert int(kept.sum()) + len(d) + int((~valid).sum()) == n


@pytest.mark.parametrize("spill", [0, 2])
def test_partitioned_is_valid_and_finds_planted_duplicates(spill):
    n = 3000
    x, lab, src = clustered(n)
    valid = np.ones(n, bool)
    valid[[5, 77]] = False  # rejected embeddings take no part
    x[[5, 77]] = 0
    res = partitioned_stages(x, valid, None, PartitionParams(k=8, partitions=6, spill=spill))
    check_merged(res, n, valid)
    assert res.info["partitions"] == 6 and (res.assign[~valid] == -1).all()
    planted = np.arange(n - 40, n)
    removed = (res.dup_of[planted] >= 0) | (res.dup_of[src] >= 0)
    assert removed.mean() >= (1.0 if spill else 0.9)


def test_one_partition_equals_single_machine():
    """With one partition the stage functions see exactly the single-machine inputs."""
    n = 1500
    x, _, _ = clustered(n, dups=30, seed=1)
    res = partitioned_stages(x, None, None, PartitionParams(k=6, partitions=1, spill=2))
    ids, sims, _ = knn_graph(x, k=6, index="auto")
    dup_of = find_duplicates(ids, sims, 0.97)
    keep = dup_of < 0
    k_ids, k_sims = restrict_knn(ids, sims, dup_of, keep)
    order = np.flatnonzero(keep)[compute_order("paper", graph_from_knn(k_ids, k_sims))]
    assert np.array_equal(res.ids, ids) and np.allclose(res.sims, sims)
    assert np.array_equal(res.dup_of, dup_of)
    assert np.array_equal(res.order, order)


def test_local_mapper_and_custom_mapper_agree():
    """The engine only decides where tasks run: any mapper (here: reversed completion order) gives the same result."""
    x, _, _ = clustered(2000, seed=2)
    p = PartitionParams(k=6, partitions=5, spill=1)
    a = partitioned_stages(x, None, None, p, local_mapper)

    def reversed_mapper(fn, args_list):
        done = list(local_mapper(fn, args_list))
        return iter(done[::-1])

    b = partitioned_stages(x, None, None, p, reversed_mapper)
    assert np.array_equal(a.order, b.order) and np.array_equal(a.dup_of, b.dup_of) and np.array_equal(a.ids, b.ids)


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailable, match="pip install"):
        RaySession().start()


def test_cli_engine_options():

    from contextsort import cli

    p = cli.build_parser()
    c = cli.config_from_args(p.parse_args(["run", "x", "-o", "y", "--engine", "ray", "--ray-address", "auto", "--partitions", "7", "--spill", "1", "--workers", "3"]))
    assert (c.engine.name, c.engine.ray_address, c.engine.partitions, c.engine.spill, c.engine.workers) == ("ray", "auto", 7, 1, 3)


# --------------------------------------------------------------------------- Ray


@pytest.mark.ray
def test_ray_run_on_bbc_matches_single_machine(tmp_path, ray_local, bbc_path):
    """Ray engine on BBC: counts add up, a valid permutation, quality within 5% of single-machine."""
    import contextsort
    from contextsort.config import Config
    from contextsort.corpus import DocStore
    from contextsort.metrics import label_agreement, path_weight

    cfg = Config()
    cfg.similarity.similarity = "dense"  # partitions are built on the dense cosine: compare like with like
    single_run = contextsort.run([bbc_path], tmp_path / "single", cfg)
    cfg.engine.name = "ray"
    cfg.engine.partitions = 4
    res = contextsort.run([bbc_path], tmp_path / "ray", cfg)
    c = res.counts
    assert c["adds_up"] and c["kept"] + c["duplicates"] + c["rejected"] == c["records_read"] == single_run.counts["records_read"]
    man = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert man["stages"]["neighbors"]["engine"] == "ray" and man["stages"]["neighbors"]["partitions"] == 4
    dup_of = np.load(tmp_path / "ray" / "dup_of.npy")
    valid = np.load(tmp_path / "ray" / "embed_valid.npy")
    assert np.array_equal(np.sort(res.order), np.flatnonzero(valid & (dup_of < 0)))
    # embedding batches run as Ray tasks give the same vectors as the in-process loop
    assert np.array_equal(np.load(tmp_path / "ray" / "embeddings.npy"), np.load(single_run.run_dir / "embeddings.npy"))
    # quality, both orders scored on the single-machine kNN graph and labels
    single = single_run.run_dir
    g = graph_from_knn(np.load(single / "knn_ids.npy"), np.load(single / "knn_sims.npy"))
    labels = DocStore(single / "store").labels
    pw_s, pw_r = path_weight(g, single_run.order)["mean"], path_weight(g, res.order)["mean"]
    la_s, la_r = label_agreement(labels, single_run.order)["ordered"], label_agreement(labels, res.order)["ordered"]
    assert pw_r >= 0.95 * pw_s, (pw_r, pw_s)
    assert la_r >= 0.95 * la_s, (la_r, la_s)
    # documents read back from the written output are the kept ones, once each
    with open(tmp_path / "ray" / "ordered.jsonl") as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == c["kept"] and len({r["id"] for r in rows}) == c["kept"]
    # written by Ray tasks (manifest says so), the same files as the local writer gives for this order
    assert man["stages"]["write"]["engine"] == "ray" and man["stages"]["write"]["parts"] >= 1
    from contextsort.formats import write_ordered

    (tmp_path / "local_write").mkdir()
    write_ordered(tmp_path / "local_write", DocStore(tmp_path / "ray" / "store"), res.order, cfg.output.formats, cfg.input.label_field)
    assert_same_outputs(tmp_path / "local_write", tmp_path / "ray")


# ------------------------------------------------------------------ parallel write


def _store(tmp_path, records):
    from contextsort.corpus import DocStore, DocStoreWriter, Record

    w = DocStoreWriter(tmp_path / "store")
    for i, (rid, text, fields) in enumerate(records):
        assert w.add(Record("x.jsonl", i + 1, rid, text, fields)) is None
    w.close()
    return DocStore(tmp_path / "store")


def _bbc_store(tmp_path, bbc_path, n: int):
    """The first `n` documents of the BBC sample in a document store (ingest only: no embedding)."""
    from contextsort.corpus import CorpusReader, Record

    recs = []
    for item in CorpusReader([bbc_path]):
        if isinstance(item, Record):
            recs.append((item.id, item.text, item.fields))
        if len(recs) == n:
            break
    return _store(tmp_path, recs)


def assert_same_outputs(a, b):
    """ordered.jsonl byte-identical; ordered.parquet read back (the real reader) as an equal table; no parts left."""
    import pyarrow.parquet as pq

    from contextsort.formats.parallel import PARTS_DIR

    assert (a / "ordered.jsonl").read_bytes() == (b / "ordered.jsonl").read_bytes()
    ta, tb = pq.read_table(a / "ordered.parquet"), pq.read_table(b / "ordered.parquet")
    assert ta.schema.equals(tb.schema, check_metadata=True) and ta.equals(tb)
    assert not (b / PARTS_DIR).exists() and not list(b.glob("*.tmp"))


def test_parallel_write_equals_local_on_mixed_records(tmp_path, monkeypatch):
    """Shards whose records differ (a field missing, int vs float, null-only in a shard) give the local writer's files.

    BATCH shrunk to 8 rows so that 37 rows make several batches and shards (shards are whole batches).
    """
    from contextsort import formats
    from contextsort.formats import write_ordered

    monkeypatch.setattr(formats, "BATCH", 8)
    from contextsort.formats.parallel import write_ordered_parallel

    recs = []
    for i in range(40):
        f = {"id": f"d{i}", "text": f"doc {i} é", "label": ["a", "b"][i % 2]}
        if i < 12:
            f["score"] = i  # int in the first shards ...
        elif i >= 30:
            f["score"] = i / 3  # ... float in the last one
        if 14 <= i < 20:
            f["note"] = None  # null-only in one shard, a string in a later one
        if i == 33:
            f["note"] = "late"
        f["mixed"] = i if i % 3 else str(i)  # int and str: written to Parquet as JSON text
        recs.append((f["id"], f["text"], f))
    store = _store(tmp_path, recs)
    order = np.random.default_rng(0).permutation(40)[:37]
    a, b = tmp_path / "local", tmp_path / "parallel"
    a.mkdir(), b.mkdir()
    write_ordered(a, store, order, ["jsonl", "parquet"], "label")
    (b / ".ordered.parts").mkdir()  # a crashed run's leftovers are cleared
    files, info = write_ordered_parallel(b, store, order, ["jsonl", "parquet"], "label", local_mapper, rows_per_part=9)
    assert files == ["ordered.jsonl", "ordered.parquet"] and info["parts"] == 3  # 9 rows -> 16 (whole batches)
    import pyarrow.parquet as pq

    schema = pq.read_schema(b / "ordered.parquet")  # decided from the whole store, not from the first shard
    assert str(schema.field("score").type) == "double" and str(schema.field("note").type) == "string"
    assert list(info["converted_fields"]) == ["mixed"] and info["position_field"] == "position"
    assert_same_outputs(a, b)
    rows = [json.loads(line) for line in (b / "ordered.jsonl").open()]
    assert [r["position"] for r in rows] == list(range(37)) and [r["id"] for r in rows] == [f"d{i}" for i in order]


@pytest.mark.ray
def test_ray_parallel_write_equals_local(tmp_path, ray_local, bbc_path, monkeypatch):
    """Ray tasks write the shards of a BBC subset; the assembled files equal the local writer's (BATCH shrunk to 64)."""
    from contextsort import formats
    from contextsort.formats import write_ordered

    monkeypatch.setattr(formats, "BATCH", 64)
    from contextsort.engines.ray import RayEngine
    from contextsort.formats.parallel import write_ordered_parallel

    store = _bbc_store(tmp_path, bbc_path, 500)
    order = np.random.default_rng(1).permutation(500)[:480]
    a, b = tmp_path / "local", tmp_path / "ray"
    a.mkdir(), b.mkdir()
    write_ordered(a, store, order, ["jsonl", "parquet"], "label")
    files, info = write_ordered_parallel(b, store, order, ["jsonl", "parquet"], "label", RayEngine().map, rows_per_part=130)
    assert info["parts"] == 3  # 130 rows -> 192
    assert info["converted_fields"] == {}
    assert_same_outputs(a, b)
