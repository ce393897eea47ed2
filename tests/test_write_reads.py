"""The write stage reads records with explicit reads in file order (DocStore.records), not a
memory map at random: the records come back in the order asked, each its own dict, and the
outputs hold exactly the records the map would give."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

import contextsort.formats.removed as removed_mod
from contextsort.corpus import DocStore
from contextsort.formats.removed import duplicate_similarities, removed_entries, removed_lines
from contextsort.rowfile import RowFile

from test_pack import small_run  # noqa: F401


def test_records_in_asked_order_with_repeats(small_run):  # noqa: F811
    store = DocStore(small_run.run_dir / "store")
    ids = np.random.default_rng(0).integers(0, len(store), 200)
    ids[:3] = ids[3]  # repeats
    got = store.records(ids)
    assert got == [store.record(int(i)) for i in ids]
    assert len({id(r) for r in got}) == len(ids)  # a new dict per entry: the writer adds the position to each
    assert store.records(np.array([], dtype=np.int64)) == []


def test_ordered_outputs_hold_the_stored_records(small_run):  # noqa: F811
    run = small_run.run_dir
    store, order = DocStore(run / "store"), np.load(run / "order.npy")
    lines = (run / "ordered.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(order) and len(order) > 10
    for pos, (line, i) in enumerate(zip(lines, order.tolist())):
        want = store.record(i)
        want["position"] = pos
        assert json.loads(line) == want
    table = pq.read_table(run / "ordered.parquet")
    assert table.column("position").to_pylist() == list(range(len(order)))
    assert table.column("id").to_pylist() == [store.record(i)["id"] for i in order.tolist()]


def test_removed_lines_same_across_batch_sizes(small_run, monkeypatch):  # noqa: F811
    run = small_run.run_dir
    store = DocStore(run / "store")
    dup_of = np.load(run / "dup_of.npy")
    valid = np.load(run / "embed_valid.npy").copy()
    valid[small_run.order[:2]] = False  # two kept documents with a bad embedding
    index, dup, sim = removed_entries(dup_of, valid, np.load(run / "knn_ids.npy"), np.load(run / "knn_sims.npy"))
    assert len(index) > 3
    whole = list(removed_lines(store, "id", index, dup, sim))
    monkeypatch.setattr(removed_mod, "LINES_BATCH", 3)
    assert list(removed_lines(store, "id", index, dup, sim)) == whole
    rows = [json.loads(x) for x in whole]
    assert [r["id"] for r in rows] == [store.record(i)["id"] for i in index.tolist()]
    assert [r.get("duplicate_of") for r in rows] == [store.record(j)["id"] if j >= 0 else None for j in dup.tolist()]


def test_duplicate_similarities_from_row_files_equal_arrays(tmp_path):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 500, (500, 8))
    sims = rng.random((500, 8)).astype(np.float32)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "sims.npy", sims)
    i = rng.integers(0, 500, 300)
    j = np.where(rng.random(300) < 0.7, ids[i, rng.integers(0, 8, 300)], rng.integers(0, 500, 300))
    want = duplicate_similarities(ids, sims, i, j, chunk=64)
    got = duplicate_similarities(RowFile(tmp_path / "ids.npy"), RowFile(tmp_path / "sims.npy"), i, j, chunk=64)
    assert np.array_equal(got, want, equal_nan=True) and np.isfinite(want).sum() >= 200
