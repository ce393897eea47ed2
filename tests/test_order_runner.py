"""Orders through the whole pipeline: manifest metrics, and the repeating kNN baseline's output."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import contextsort
from contextsort.cli import main
from contextsort.config import Config


TOPICS = {
    "sport": "team match goal striker half coach league season win defeat referee penalty stadium fans cup "
             "final player transfer injury keeper",
    "tech": "software update battery phone processor chip laptop internet network data privacy app "
            "screen camera cloud server code robot startup device",
    "food": "recipe tomato garlic olive oil basil pasta sauce bread cheese oven bake salad soup chef "
            "restaurant dinner spice butter flour",
}


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = []
    for label, vocab in TOPICS.items():
        words = vocab.split()
        for i in range(15):
            text = " ".join(rng.choice(words, 8, replace=False))
            rows.append({"id": f"{label}-{i}", "text": f"{text}.", "label": label})
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "c.jsonl", rows)


def _cfg(order: str, **opts) -> Config:
    c = Config()
    c.order.algorithm = order
    c.knn.k = 4
    for k, v in opts.items():
        setattr(c.order, k, v)
    return c


@pytest.mark.parametrize("order", ["release", "improved", "edge", "cluster"])
def test_permutation_orders_write_each_document_once(tmp_path, small_corpus, order):
    res = contextsort.run([small_corpus], tmp_path / "run", _cfg(order, clusters=3))
    rows = [json.loads(line) for line in open(tmp_path / "run" / "ordered.jsonl", encoding="utf-8")]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == res.counts["kept"] == res.counts["output_rows"]
    assert res.counts["adds_up"]
    m = res.metrics
    assert 0 < m["path_weight"]["ratio"] <= 1.0 + 1e-9
    assert m["path_weight"]["bound"] >= m["path_weight"]["sum"]
    assert m["path_weight"]["bound"] <= m["path_weight"]["path_bound_two_best"] + 1e-9
    assert m["path_weight"]["ratio_two_best"] <= m["path_weight"]["ratio"] + 1e-9
    assert "label_agreement" in m and "random" in m["label_agreement"]
    assert "repeats" not in m


def test_knn_baseline_output_repeats_documents_and_says_how_often(tmp_path, small_corpus):
    res = contextsort.run([small_corpus], tmp_path / "run", _cfg("knn", knn_neighbors=2))
    rows = [json.loads(line) for line in open(tmp_path / "run" / "ordered.jsonl", encoding="utf-8")]
    seen = Counter(r["id"] for r in rows)
    kept = res.counts["kept"]
    assert len(seen) == kept  # every kept document is there
    assert len(rows) == res.counts["output_rows"] > kept  # ... and some more than once
    assert res.counts["adds_up"]
    counts = np.load(tmp_path / "run" / "order_counts.npy")
    rep = res.metrics["repeats"]
    assert rep["rows"] == len(rows) and rep["documents"] == kept
    assert rep["min"] >= 1 and rep["max"] == max(seen.values())
    assert int(counts.sum()) == len(rows)
    assert sorted(int(c) for c in counts if c > 0) == sorted(seen.values())
    assert [r["position"] for r in rows] == list(range(len(rows)))


def test_cli_rejects_an_unknown_order(tmp_path, small_corpus, capsys):
    rc = main(["run", str(small_corpus), "-o", str(tmp_path / "r"), "--order", "nope", "-q"])
    assert rc == 2
    assert "--order must be one of cluster, edge, improved, knn, paper, random, release, got 'nope'" in capsys.readouterr().err
