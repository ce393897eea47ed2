"""removed.jsonl made by tasks per range of removed documents and joined by the driver equals
one pass byte for byte; every removed record is there once with its reason."""

from __future__ import annotations

import json

import numpy as np

from contextsort.formats.removed import PARTS_DIR, duplicate_similarities, write_removed

from test_pack import small_run  # noqa: F401
from test_pack_parallel import reversed_mapper


def test_duplicate_similarities_first_hit_either_direction():
    ids = np.array([[1, 2, 1], [3, 0, 0], [0, 1, 3], [2, 2, 2]])
    sims = np.array([[.9, .8, .7], [.6, .5, .4], [.3, .2, .1], [.05, .04, .03]], dtype=np.float32)
    got = duplicate_similarities(ids, sims, np.array([0, 1, 3, 1, 2]), np.array([1, 0, 0, 2, 3]), chunk=2)
    want = [np.float32(.9), np.float32(.5), np.nan, np.float32(.2), np.float32(.1)]  # (3, 0): neither lists the other
    assert np.array_equal(got, np.array(want, dtype=np.float64), equal_nan=True)


def test_removed_by_tasks_equals_one_pass(small_run, tmp_path):  # noqa: F811
    run = small_run.run_dir
    dup_of = np.load(run / "dup_of.npy")
    valid = np.load(run / "embed_valid.npy").copy()
    valid[small_run.order[:2]] = False  # two kept documents with a bad embedding
    dup_of_bad = dup_of.copy()
    ids, sims = np.load(run / "knn_ids.npy"), np.load(run / "knn_sims.npy")
    rejects = tmp_path / "rejects.jsonl"
    rejects.write_text('{"source": "x.jsonl", "line": 3, "reason": "invalid JSON: café"}\n'
                       '{"source": "x.jsonl", "line": 9, "reason": "no text field"}\n', encoding="utf-8")
    one, parts = write_removed(tmp_path / "one.jsonl", run / "store", "id", dup_of_bad, valid, ids, sims, rejects)
    assert parts == 0
    many, parts = write_removed(tmp_path / "many.jsonl", run / "store", "id", dup_of_bad, valid, ids, sims, rejects,
                                reversed_mapper, workers=2, rows_per_part=7)
    n_dups = int((dup_of >= 0).sum())
    assert one == many == n_dups + 2 + 2 and parts == -(-(n_dups + 2) // 7) + 1
    assert (tmp_path / "many.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert not (tmp_path / PARTS_DIR).exists()
    rows = [json.loads(x) for x in (tmp_path / "many.jsonl").read_text(encoding="utf-8").splitlines()]
    reasons = [r["reason"] for r in rows]
    assert reasons.count("duplicate") == n_dups and reasons.count("rejected: embedding is zero or NaN") == 2
    assert reasons[-2:] == ["rejected: invalid JSON: café", "rejected: no text field"]
    assert all(r["similarity"] is None or 0 < r["similarity"] <= 1.0001 for r in rows if r["reason"] == "duplicate")
    assert len({r["id"] for r in rows[:-2]}) == n_dups + 2  # each removed document once
