"""The blocked IVF self-join ("ivfgemm"): recall against exact search, determinism, padding."""

from __future__ import annotations

import numpy as np

from contextsort.neighbors import choose_index, knn_graph


def clustered(n, d=32, centers=60, spread=0.35, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d))
    x = c[rng.integers(0, centers, n)] + spread * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall(exact, approx):
    return np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(exact, approx)])


def test_ivfgemm_recall_on_20k_clustered_set_and_scores_are_dot_products():
    emb = clustered(20_000)
    exact, exact_sims, _ = knn_graph(emb, k=10, index="flat")
    ids, sims, info = knn_graph(emb, k=10, index="ivfgemm", nlist=100, nprobe=8)
    assert info.index == "ivfgemm" and ids.shape == (20_000, 10)
    assert info.params["scanned_fraction"] < 0.3  # approximate: most pairs are never scored
    assert recall(exact, ids) >= 0.95
    assert (ids >= 0).all() and not (ids == np.arange(20_000)[:, None]).any()
    dots = np.einsum("ij,ikj->ik", emb, emb[ids])
    assert np.allclose(sims, dots, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 0).all()  # decreasing
    assert all(len(set(r)) == 10 for r in ids[:2000])  # no neighbour twice
    assert (sims <= exact_sims + 1e-5).all()  # never better than exact at any rank


def test_ivfgemm_is_deterministic():
    emb = clustered(6000, seed=4)
    a = knn_graph(emb, k=8, index="ivfgemm", nlist=30, nprobe=4)
    b = knn_graph(emb, k=8, index="ivfgemm", nlist=30, nprobe=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_ivfgemm_pads_short_lists_with_minus_one_and_zero():
    emb = clustered(300, centers=8, seed=2)
    ids, sims, _ = knn_graph(emb, k=10, index="ivfgemm", nlist=60, nprobe=1)  # each list joined only with itself
    valid = ids >= 0
    assert (~valid).any()  # some lists hold fewer than 11 documents
    assert not (ids == np.arange(300)[:, None]).any()
    assert (sims[~valid] == 0).all()
    # valid entries come first, then padding
    assert (np.diff(valid.astype(int), axis=1) <= 0).all()
    for r in range(300):
        row = ids[r][valid[r]]
        assert len(set(row)) == len(row)
        assert np.allclose(sims[r][valid[r]], emb[row] @ emb[r], atol=1e-5)


def test_ivfgemm_queries_subset_equals_full_rows():
    emb = clustered(5000, seed=5)
    full_ids, full_sims, _ = knn_graph(emb, k=6, index="ivfgemm", nlist=25, nprobe=5)
    done = []
    ids, sims, _ = knn_graph(emb, k=6, index="ivfgemm", nlist=25, nprobe=5, n_queries=2000, progress=done.append)
    assert ids.shape == (2000, 6) and sum(done) == 2000
    assert np.array_equal(ids, full_ids[:2000]) and np.array_equal(sims, full_sims[:2000])



def test_ivfgemm_is_chosen_only_when_asked():
    assert choose_index(10_000) == "flat"
    assert choose_index(1_000_000) == "ivffs"  # ivfgemm not measured faster at equal recall (docs/benchmarks.md)
    assert choose_index(50_001) == "ivffs" and choose_index(1_000_000, "ivf") == "ivf"
    assert choose_index(10, "ivfgemm") == "ivfgemm"
