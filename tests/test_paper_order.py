"""Algorithm 1 (the paper's greedy traversal) on hand-made and random graphs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from contextsort.graph import graph_from_knn
from contextsort.metrics import path_weight
from contextsort.order import compute_order
from contextsort.order.paper import paper_order


def knn_from_edges(n: int, edges: list[tuple[int, int, float]], k: int | None = None):
    """kNN arrays holding each edge in the row of its first node."""
    rows: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for a, b, w in edges:
        rows[a].append((b, w))
    k = k or max(1, max(len(r) for r in rows))
    ids = np.full((n, k), -1, dtype=np.int64)
    sims = np.zeros((n, k), dtype=np.float32)
    for i, r in enumerate(rows):
        for j, (b, w) in enumerate(r):
            ids[i, j] = b
            sims[i, j] = w
    return ids, sims


def test_graph_is_undirected_and_sorted():
    ids, sims = knn_from_edges(3, [(0, 1, 0.5), (0, 2, 0.9)])
    g = graph_from_knn(ids, sims)
    assert g.degree.tolist() == [2, 1, 1]
    assert g.indices[g.indptr[0] : g.indptr[1]].tolist() == [2, 1]  # heaviest first
    assert g.indices[g.indptr[1] : g.indptr[2]].tolist() == [0]  # edge seen from both ends


def test_path_graph_is_walked_end_to_end():
    # 3-1-4-0-2 as a chain; node 3 and node 2 have degree 1, 2 < 3 ... but ties go to lower index
    chain = [3, 1, 4, 0, 2]
    edges = [(chain[i], chain[i + 1], 0.8) for i in range(4)]
    order = paper_order(graph_from_knn(*knn_from_edges(5, edges)))
    assert order.tolist() == chain[::-1]  # starts at node 2 (min degree, lowest index)


def test_moves_to_highest_similarity_neighbour():
    # Node 0 has degree 1 (start). Its neighbour 1 links to 2 (0.3) and 3 (0.9): the walk goes to 3.
    edges = [(0, 1, 0.5), (1, 2, 0.3), (1, 3, 0.9), (3, 4, 0.2), (2, 4, 0.1), (2, 3, 0.05)]
    order = paper_order(graph_from_knn(*knn_from_edges(5, edges)))
    assert order[:3].tolist() == [0, 1, 3]
    # from 3: unvisited neighbours 4 (0.2) and 2 (0.05) -> 4, then 2
    assert order.tolist() == [0, 1, 3, 4, 2]


def test_jumps_to_min_degree_unvisited_node():
    # Two components: a triangle {0,1,2} and a path 3-4-5. Degrees: 2,2,2,1,2,1.
    edges = [(0, 1, 0.9), (1, 2, 0.8), (0, 2, 0.7), (3, 4, 0.6), (4, 5, 0.5)]
    order = paper_order(graph_from_knn(*knn_from_edges(6, edges)))
    # start: min degree 1 -> node 3; walk 3,4,5; stuck -> jump to min-degree unvisited = 0 (tie, lowest index)
    assert order.tolist() == [3, 4, 5, 0, 1, 2]
    pw = path_weight(graph_from_knn(*knn_from_edges(6, edges)), order)
    assert pw["jumps"] == 1
    assert abs(pw["sum"] - (0.6 + 0.5 + 0.9 + 0.8)) < 1e-6


def test_isolated_nodes_are_all_visited():
    ids = np.full((4, 2), -1, dtype=np.int64)
    sims = np.zeros((4, 2), dtype=np.float32)
    order = paper_order(graph_from_knn(ids, sims))
    assert sorted(order.tolist()) == [0, 1, 2, 3]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_order_is_a_permutation(n, k, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(-1, n, size=(n, k))
    sims = rng.random((n, k)).astype(np.float32)
    order = paper_order(graph_from_knn(ids, sims))
    assert order.dtype == np.int64
    assert sorted(order.tolist()) == list(range(n))


def test_beats_random_on_path_weight():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(2000, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    from contextsort.neighbors import knn_graph

    ids, sims, _ = knn_graph(emb, k=10)
    g = graph_from_knn(ids, sims)
    greedy = path_weight(g, paper_order(g))["sum"]
    rand = path_weight(g, compute_order("random", g, seed=0))["sum"]
    assert greedy > 5 * rand


def reference_graph(ids, sims):
    """The graph's definition in plain Python: edge {a, b} if either lists the other, weight the
    largest listed similarity; each row by decreasing weight, ties to the lower id."""
    best: dict[tuple[int, int], float] = {}
    for a in range(ids.shape[0]):
        for b, w in zip(ids[a].tolist(), sims[a].tolist()):
            if b < 0 or b == a:
                continue
            for key in ((a, b), (b, a)):
                best[key] = max(best.get(key, -np.inf), w)
    rows = [sorted(((b, w) for (a2, b), w in best.items() if a2 == a), key=lambda bw: (-bw[1], bw[0]))
            for a in range(ids.shape[0])]
    return rows


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 90), st.integers(1, 70), st.integers(0, 2**32 - 1))
def test_graph_equals_its_definition(n, k, seed):
    # few distinct weights (ties), negative ones, -0.0; k up to 70 gives rows past the short-row sort
    rng = np.random.default_rng(seed)
    ids = rng.integers(-1, n, (n, k))
    sims = rng.choice(np.array([-0.5, -0.0, 0.0, 0.25, 0.5, 0.75], dtype=np.float32), (n, k))
    g = graph_from_knn(ids, sims)
    for a, row in enumerate(reference_graph(ids, sims)):
        got_ids = g.indices[g.indptr[a] : g.indptr[a + 1]].tolist()
        got_w = g.weights[g.indptr[a] : g.indptr[a + 1]].tolist()
        assert got_ids == [b for b, _ in row]
        assert got_w == [w for _, w in row]
