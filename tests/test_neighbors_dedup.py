"""kNN graph (FAISS) against brute force; dedup on planted duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from contextsort.dedup import find_duplicates
from contextsort.graph import restrict_knn
from contextsort.neighbors import knn_graph


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n=3000, d=32, centers=30, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d))
    return unit(c[rng.integers(0, centers, n)] + 0.3 * rng.normal(size=(n, d)))


def test_exact_knn_matches_brute_force_and_excludes_self():
    emb = clustered(500)
    ids, sims, info = knn_graph(emb, k=7, index="flat")
    assert info.index == "flat" and ids.shape == (500, 7)
    full = emb @ emb.T
    np.fill_diagonal(full, -np.inf)
    expect = np.sort(full, axis=1)[:, ::-1][:, :7]
    assert np.allclose(sims, expect, atol=1e-5)
    assert not (ids == np.arange(500)[:, None]).any()
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # sorted by decreasing similarity


@pytest.mark.parametrize("index", ["ivf", "ivffs", "ivfgemm", "hnsw", "ivfpq"])
def test_approximate_indexes_have_high_recall(index):
    emb = clustered(4000)
    exact, _, _ = knn_graph(emb, k=10, index="flat")
    approx, _, info = knn_graph(emb, k=10, index=index)
    assert info.index == index
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall > 0.8, recall


def test_ivffs_scores_are_exact_dot_products_and_runs_are_byte_identical():
    emb = clustered(6000, d=64, centers=60, seed=3)
    a = knn_graph(emb, k=10, index="ivffs", nprobe=8)
    b = knn_graph(emb, k=10, index="ivffs", nprobe=8)
    ids, sims, info = a
    assert info.index == "ivffs" and info.params["nprobe"] == 8
    assert ids.tobytes() == b[0].tobytes() and sims.tobytes() == b[1].tobytes()
    assert not (ids == np.arange(6000)[:, None]).any()
    assert (ids >= 0).all() and all(len(set(r)) == 10 for r in ids)  # no repeats
    direct = np.einsum("id,ikd->ik", emb, emb[ids])
    assert np.allclose(sims, direct, atol=1e-5)  # re-ranked with the real vectors, not the PQ codes
    assert (np.diff(sims, axis=1) <= 1e-6).all()


def test_rerank_keeps_best_candidates_ties_to_lower_id_and_reads_float16():
    from contextsort.neighbors import rerank_exact

    emb = unit(np.random.default_rng(0).normal(size=(50, 8)))
    emb[7] = emb[3]  # a tie: the lower id comes first
    q = emb[:2]
    cand = np.array([[7, 3, 10, -1, 20], [5, 5, 9, 1, -1]])
    s, i = rerank_exact(emb, q, cand, 3)
    for r in range(2):
        c = np.unique(cand[r][cand[r] >= 0])
        sc = emb[c] @ q[r]
        best = c[np.lexsort((c, -sc))][:3]
        assert list(i[r]) == list(best), (i[r], best)
        assert np.allclose(s[r], emb[best] @ q[r], atol=1e-6)
    assert i[0][:2].tolist() == [3, 7] or i[0][0] != 3  # ids 3 and 7 tie: 3 first when both lead
    s16, i16 = rerank_exact(emb.astype(np.float16), q, cand, 3)
    assert i16.tolist() == i.tolist()


def test_k_is_capped_below_n():
    ids, sims, info = knn_graph(clustered(3), k=10)
    assert ids.shape == (3, 2) and info.k == 2
    ids, sims, info = knn_graph(clustered(1), k=10)
    assert ids.shape == (1, 0)


def test_planted_duplicates_are_removed_and_point_to_kept_document():
    rng = np.random.default_rng(3)
    base = clustered(400, seed=3)
    # plant: 20 exact copies, 20 near copies (tiny noise), appended after the originals
    src_exact = rng.choice(400, 20, replace=False)
    src_near = rng.choice(np.setdiff1d(np.arange(400), src_exact), 20, replace=False)
    near = unit(base[src_near] + 0.01 * rng.normal(size=(20, base.shape[1])))
    emb = np.vstack([base, base[src_exact], near])
    ids, sims, _ = knn_graph(emb, k=10)
    dup_of = find_duplicates(ids, sims, threshold=0.97)
    planted = np.arange(400, 440)
    assert (dup_of[planted] >= 0).all()
    assert dup_of[400:420].tolist() == src_exact.tolist()
    assert dup_of[420:440].tolist() == src_near.tolist()
    # every removed document points at a kept one
    removed = np.flatnonzero(dup_of >= 0)
    assert (dup_of[dup_of[removed]] == -1).all()
    # no two kept documents are still linked above the threshold
    kept = dup_of < 0
    for i in np.flatnonzero(kept):
        for j, s in zip(ids[i], sims[i]):
            assert not (j >= 0 and kept[j] and s >= 0.97)


def test_exact_text_hash_duplicates_even_without_edges():
    ids = np.full((4, 1), -1, dtype=np.int64)
    sims = np.zeros((4, 1), dtype=np.float32)
    hashes = np.array([7, 9, 7, 7], dtype=np.uint64)
    dup_of = find_duplicates(ids, sims, threshold=2.0, text_hash=hashes)
    assert dup_of.tolist() == [-1, -1, 0, 0]


def test_restricted_graph_redirects_removed_neighbours():
    # 0 -> 2 (removed as dup of 1): in the kept graph 0 links to 1 instead.
    ids = np.array([[2, -1], [2, 0], [1, 0]])
    sims = np.array([[0.9, 0], [0.99, 0.5], [0.99, 0.9]], dtype=np.float32)
    dup_of = np.array([-1, -1, 1])
    k_ids, k_sims = restrict_knn(ids, sims, dup_of)
    assert k_ids.shape[0] == 2
    assert k_ids[0].tolist()[0] == 1
    assert 0 in k_ids[1].tolist()


def test_auto_index_above_20k_keeps_recall_and_is_deterministic():
    """The mid-size IVF that `auto` picks above EXACT_MAX_N keeps recall@10 >= 0.99 against exact search."""
    from contextsort.neighbors import EXACT_MAX_N, choose_index

    assert choose_index(EXACT_MAX_N) == "flat" and choose_index(EXACT_MAX_N + 1) == "ivf"
    rng = np.random.default_rng(5)  # loose clusters: 8 probes instead of 32 give recall 0.979 here
    centers = rng.normal(size=(400, 48))
    emb = unit(centers[rng.integers(0, 400, EXACT_MAX_N + 1000)] + 1.0 * rng.normal(size=(EXACT_MAX_N + 1000, 48)))
    exact, _, _ = knn_graph(emb, k=10, index="flat")
    approx, sims, info = knn_graph(emb, k=10)
    again, sims_again, _ = knn_graph(emb, k=10)
    assert info.index == "ivf" and info.params["nprobe"] >= 32
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall >= 0.99, recall
    assert np.array_equal(approx, again) and np.array_equal(sims, sims_again)
