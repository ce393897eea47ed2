"""path_bound: a valid upper bound on the best Hamiltonian path (brute force on small random
graphs, negative weights and unlinked pairs included), never above the two-best-edges bound,
and exact where the answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextsort.graph import graph_from_knn
from contextsort.metrics import path_bound, path_bound_forest, path_bound_two_best, path_edge_weights


def best_path_weight(graph) -> float:
    """The heaviest Hamiltonian path by brute force (jumps between unlinked documents count 0)."""
    best = -np.inf
    for perm in itertools.permutations(range(graph.n)):
        if perm[0] > perm[-1]:
            continue
        best = max(best, float(path_edge_weights(graph, np.asarray(perm)).sum()))
    return best


def max_spanning_forest(graph) -> float:
    """Kruskal over the positive edges, written out plainly (the forest bound with no penalties)."""
    edges = sorted(((float(graph.weights[e]), u, int(graph.indices[e])) for u in range(graph.n)
                    for e in range(graph.indptr[u], graph.indptr[u + 1])
                    if graph.indices[e] > u and graph.weights[e] > 0), reverse=True)
    parent = list(range(graph.n))

    def root(x):
        while parent[x] != x:
            x = parent[x]
        return x

    total = 0.0
    for w, a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[ra] = rb
            total += w
    return total


@st.composite
def small_knn(draw):
    """kNN lists of 2-8 documents: random targets (-1 = none), weights in [-0.5, 1], ties likely."""
    n = draw(st.integers(2, 8))
    k = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    ids = rng.integers(-1, n, (n, k)).astype(np.int64)
    sims = rng.uniform(-0.5, 1.0, (n, k)).astype(np.float32)
    if draw(st.booleans()):
        sims = np.round(sims, 1)
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(ids, order, 1), np.take_along_axis(sims, order, 1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_knn())
def test_bounds_are_above_the_best_path_and_the_new_one_below_the_old(data):
    g = graph_from_knn(*data)
    best = best_path_weight(g)
    forest = path_bound_forest(g)
    two = path_bound_two_best(g)
    bound = path_bound(g)
    assert forest >= best - 1e-6
    assert two >= best - 1e-6
    assert bound >= best - 1e-6
    assert bound <= two + 1e-9
    assert bound == pytest.approx(min(forest, two))
    # no penalties: the maximum spanning forest of the positive edges; penalties only tighten
    assert path_bound_forest(g, iterations=1) == pytest.approx(max_spanning_forest(g), abs=1e-6)
    assert forest <= max_spanning_forest(g) + 1e-9


def test_star_two_best_is_loose_the_forest_bound_is_exact():
    """A star with 6 leaves of weight 1: a path uses at most 2 of its edges (weight 2), but the
    two-best bound counts every leaf's edge (4: half of 6 leaves + centre 2); the forest bound
    with penalties finds 2."""
    ids = np.array([[1, 2, 3, 4, 5, 6]] + [[-1] * 6] * 6, np.int64)
    sims = np.where(ids >= 0, 1.0, 0.0).astype(np.float32)
    g = graph_from_knn(ids, sims)
    assert best_path_weight(g) == pytest.approx(2.0)
    assert path_bound_two_best(g) == pytest.approx(4.0)
    assert path_bound_forest(g) == pytest.approx(2.0, abs=1e-3)


def test_a_line_is_its_own_bound():
    """On a path graph the maximum spanning forest is the path itself: the bound is exact."""
    n = 30
    w = np.random.default_rng(1).uniform(0.2, 0.9, n - 1).astype(np.float32)
    ids = np.full((n, 1), -1, np.int64)
    sims = np.zeros((n, 1), np.float32)
    ids[:-1, 0] = np.arange(1, n)
    sims[:-1, 0] = w
    g = graph_from_knn(ids, sims)
    assert path_bound(g) == pytest.approx(float(w.astype(np.float64).sum()), rel=1e-9)


def test_only_negative_edges_bound_is_zero():
    ids = np.array([[1], [2], [3], [-1]], np.int64)  # a line 0-1-2-3 of negative edges
    sims = np.full((4, 1), -0.3, np.float32)
    g = graph_from_knn(ids, sims)
    assert best_path_weight(g) == 0.0  # 1 3 0 2: jumps only
    assert path_bound(g) == 0.0


def test_huge_graphs_use_the_two_best_bound_alone():
    """Above max_forest_edges the forest bound (a sort of every edge per step) is left out:
    the bound is then the two-best one, still above the best path, and the method says so."""
    from contextsort.metrics import bound_method

    ids = np.array([[1, 2, 3, 4, 5, 6]] + [[-1] * 6] * 6, np.int64)
    sims = np.where(ids >= 0, 1.0, 0.0).astype(np.float32)
    g = graph_from_knn(ids, sims)
    assert bound_method(g) == "forest"
    assert bound_method(g, max_forest_edges=g.n_edges - 1) == "two_best"
    small = path_bound(g, max_forest_edges=g.n_edges - 1)
    assert small == pytest.approx(path_bound_two_best(g))
    assert small >= best_path_weight(g) - 1e-9
    assert path_bound(g) < small  # the forest bound is the tighter one here (the star)


def plain_penalised_forest(eu, ev, ew, lam, n) -> float:
    """Kruskal over the positive penalised weights, sorted by Python's exact float order."""
    w = [float(ew[e]) - lam[eu[e]] - lam[ev[e]] for e in range(len(ew))]
    parent = list(range(n))

    def root(x):
        while parent[x] != x:
            x = parent[x]
        return x

    total = 0.0
    for e in sorted((e for e in range(len(w)) if w[e] > 0), key=lambda e: -w[e]):
        ra, rb = root(int(eu[e])), root(int(ev[e]))
        if ra != rb:
            parent[ra] = rb
            total += w[e]
    return total


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_knn(), st.integers(0, 2**31 - 1), st.booleans())
def test_penalised_forest_is_a_heaviest_forest(data, seed, near_ties):
    """The packed sort keys keep only the high bits of each penalised weight: keys equal there
    are re-sorted by the exact weight, so the forest is a heaviest one even when the weights
    differ in their last bits only (near_ties) or are equal."""
    from contextsort.metrics import PenalisedForest, positive_edges

    g = graph_from_knn(*data)
    eu, ev, ew = positive_edges(g)
    rng = np.random.default_rng(seed)
    if near_ties:  # penalties a few units in the last place apart: weights tie in their high bits
        lam = rng.integers(0, 8, g.n) * 2.0**-52
    else:
        lam = np.where(rng.random(g.n) < 0.5, rng.uniform(0, 0.6, g.n), 0.0)
    forest = PenalisedForest(eu, ev, ew, g.n)
    value = forest.value(lam) - 2.0 * lam.sum()
    assert value == pytest.approx(plain_penalised_forest(eu, ev, ew, lam, g.n), abs=1e-12)
    assert forest.deg.sum() % 2 == 0 and forest.deg.sum() // 2 <= g.n - 1  # a forest's degrees


def test_same_graph_same_bound_bit_for_bit():
    rng = np.random.default_rng(5)
    n, k = 400, 8
    ids = np.stack([rng.choice(n, k, replace=False) for _ in range(n)]).astype(np.int64)
    sims = np.sort(rng.uniform(0.1, 1.0, (n, k)).astype(np.float32), axis=1)[:, ::-1].copy()
    g = graph_from_knn(ids, sims)
    walk = float(path_edge_weights(g, np.arange(n)).sum())
    first = path_bound(g, target=walk)
    assert path_bound(graph_from_knn(ids.copy(), sims.copy()), target=walk) == first
    assert first <= path_bound(g, iterations=1)  # penalties only tighten the spanning forest


def test_weights_apart_in_the_last_bits_only_are_still_ordered():
    """A triangle of 0.5 edges with penalties 0, 1, 2 units in the last place: the penalised
    weights (0.5 less 1, 2, 3 units) tie in the sort key's high bits, and the heaviest forest
    (the two heaviest edges) is found only if those ties are re-sorted by the exact weight."""
    from contextsort.metrics import PenalisedForest, positive_edges

    ids = np.array([[1, 2], [2, -1], [-1, -1]], np.int64)
    sims = np.array([[0.5, 0.5], [0.5, 0.0], [0.0, 0.0]], np.float32)
    g = graph_from_knn(ids, sims)
    eu, ev, ew = positive_edges(g)
    lam = np.array([0.0, 2.0**-54, 2.0**-53])
    assert len({float(c) - lam[a] - lam[b] for a, b, c in zip(eu, ev, ew)}) == 3  # three distinct weights
    forest = PenalisedForest(eu, ev, ew, 3)
    forest.value(lam)
    assert forest.deg.tolist() == [2, 1, 1]  # edges (0, 1) and (0, 2), not the lighter (1, 2)
