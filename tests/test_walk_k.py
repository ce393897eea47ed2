"""--walk-k: the traversal graph is searched wider than the dedup lists (docs/quality.md, round 2),
on one machine and on partitions alike; dedup keeps its --k lists."""

from __future__ import annotations

import json

import numpy as np
import pytest

import contextsort

WORDS = {
    "sport": "team match goal striker coach league season win referee penalty stadium fans cup final player",
    "tech": "software battery phone processor chip laptop internet network data privacy app camera cloud server",
    "food": "recipe tomato garlic olive basil pasta sauce bread cheese oven salad soup chef dinner butter",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("walk") / "c.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for label, vocab in WORDS.items():
            for i in range(20):
                text = " ".join(rng.choice(vocab.split(), 9, replace=False))
                fh.write(json.dumps({"id": f"{label}-{i}", "text": text + ".", "label": label}) + "\n")
    return path


def lists(run, name):
    return np.load(run / f"{name}_ids.npy"), np.load(run / f"{name}_sims.npy")


@pytest.mark.parametrize("similarity", ["dense", "hybrid"])
def test_walk_graph_is_wider_than_the_dedup_lists(tmp_path, corpus, similarity):
    res = contextsort.run([corpus], tmp_path / "run", k=4, walk_k=7, similarity=similarity, order="improved")
    run = tmp_path / "run"
    d_ids, d_sims = lists(run, "dedup")
    w_ids, w_sims = lists(run, "knn")
    assert d_ids.shape == (60, 4) and w_ids.shape == (60, 7)
    assert (np.diff(d_sims, axis=1) <= 1e-6).all()  # the dense lists, best first
    if similarity == "dense":
        assert np.array_equal(w_ids[:, :4], d_ids)  # the same search, only wider
    ordered = [json.loads(line)["id"] for line in open(run / "ordered.jsonl", encoding="utf-8")]
    assert len(ordered) == len(set(ordered)) == res.counts["kept"]
    assert res.counts["adds_up"]


def test_walk_k_none_is_the_papers_graph(tmp_path, corpus):
    contextsort.run([corpus], tmp_path / "run", k=4, walk_k=None, similarity="dense", order="paper")
    d_ids, _ = lists(tmp_path / "run", "dedup")
    w_ids, _ = lists(tmp_path / "run", "knn")
    assert np.array_equal(d_ids, w_ids) and w_ids.shape == (60, 4)


@pytest.mark.parametrize("similarity", ["dense", "hybrid"])
def test_partitions_that_see_every_document_give_the_single_machine_graphs(tmp_path, corpus, similarity):
    """Two partitions, each also searching the other (spill 1): every task sees the whole corpus,
    so the walk and dedup lists equal the single-machine ones (hybrid: up to the signal scales,
    which each task estimates on its own sample, so scores agree to 1e-2 and lists almost all)."""
    opts = dict(k=4, walk_k=7, similarity=similarity, lexical_method="exact")
    contextsort.run([corpus], tmp_path / "one", **opts)
    contextsort.run([corpus], tmp_path / "parts", partitions=2, spill=1, **opts)
    for name in ("dedup", "knn"):
        one_ids, one_sims = lists(tmp_path / "one", name)
        part_ids, part_sims = lists(tmp_path / "parts", name)
        assert one_ids.shape == part_ids.shape
        exact = name == "dedup" or similarity == "dense"
        assert np.allclose(np.sort(one_sims, axis=1), np.sort(part_sims, axis=1), atol=1e-5 if exact else 1e-2), name
        overlap = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(one_ids, part_ids)])
        assert overlap >= (1.0 if exact else 0.95), (name, overlap)
