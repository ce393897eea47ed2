"""Quality measures of an ordering (names used everywhere: CLI, manifest, benchmarks).

- adjacent_similarity: mean cosine similarity of consecutive documents.
- path_weight: sum (and mean per edge) of graph similarities along the order; jumps count 0.
- path_bound: upper bound on path_weight, the smaller of two valid bounds:
  `path_bound_two_best` (each node's two heaviest edges, summed and halved) and
  `path_bound_forest` (a Held-Karp style Lagrangian bound: a path is a forest whose degrees
  are at most 2; relaxing the degree limit with node penalties gives a maximum spanning
  forest problem, and every penalty vector gives a bound).
- label_agreement: share of consecutive pairs with the same label, beside a random order's.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .graph import Graph


@nb.njit(cache=True)
def _adjacent_dots(emb, order, out):
    for p in range(len(order) - 1):
        a = emb[order[p]]
        b = emb[order[p + 1]]
        s = 0.0
        for d in range(emb.shape[1]):
            s += float(a[d]) * float(b[d])
        out[p] = s


def adjacent_similarities(emb: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Cosine similarity of each consecutive pair along `order` (float64 [len-1])."""
    order = np.asarray(order, dtype=np.int64)
    out = np.zeros(max(0, len(order) - 1), dtype=np.float64)
    if len(order) > 1:
        _adjacent_dots(np.ascontiguousarray(emb), order, out)
    return out


def adjacent_similarity(emb: np.ndarray, order: np.ndarray) -> float:
    """Mean cosine similarity of consecutive documents along `order`."""
    s = adjacent_similarities(emb, order)
    return float(s.mean()) if len(s) else 0.0


@nb.njit(cache=True)
def _path_weights(indptr, indices, weights, order, out):
    for p in range(len(order) - 1):
        a = order[p]
        b = order[p + 1]
        w = 0.0
        for e in range(indptr[a], indptr[a + 1]):
            if indices[e] == b:
                w = weights[e]
                break
        out[p] = w


def path_edge_weights(graph: Graph, order: np.ndarray) -> np.ndarray:
    """Graph weight of each consecutive pair (0 where the pair is not an edge: a jump)."""
    order = np.asarray(order, dtype=np.int64)
    out = np.zeros(max(0, len(order) - 1), dtype=np.float64)
    if len(order) > 1:
        _path_weights(graph.indptr, graph.indices, graph.weights, order, out)
    return out


def path_weight(graph: Graph, order: np.ndarray) -> dict:
    """Sum and mean per step of graph similarities along the order, and the jump count."""
    w = path_edge_weights(graph, order)
    return {
        "sum": float(w.sum()),
        "mean": float(w.mean()) if len(w) else 0.0,
        "jumps": int((w == 0).sum()),
    }


@nb.njit(cache=True)
def _two_best(indptr, weights):
    n = len(indptr) - 1
    total = 0.0
    for i in range(n):
        b1 = 0.0
        b2 = 0.0
        for e in range(indptr[i], indptr[i + 1]):
            w = max(weights[e], 0.0)
            if w > b1:
                b2 = b1
                b1 = w
            elif w > b2:
                b2 = w
        total += b1 + b2
    return total / 2.0


def path_bound_two_best(graph: Graph) -> float:
    """Upper bound on any Hamiltonian path's weight: half the sum of each node's two best edges."""
    return float(_two_best(graph.indptr, graph.weights)) if graph.n else 0.0


@nb.njit(cache=True)
def _positive_edges(indptr, indices, weights):
    """Each undirected edge of positive weight once (u < v): only those can raise a path."""
    m = 0
    for u in range(len(indptr) - 1):
        for e in range(indptr[u], indptr[u + 1]):
            if indices[e] > u and weights[e] > 0:
                m += 1
    eu = np.empty(m, np.int64)
    ev = np.empty(m, np.int64)
    ew = np.empty(m, np.float64)
    p = 0
    for u in range(len(indptr) - 1):
        for e in range(indptr[u], indptr[u + 1]):
            if indices[e] > u and weights[e] > 0:
                eu[p] = u
                ev[p] = indices[e]
                ew[p] = weights[e]
                p += 1
    return eu, ev, ew


@nb.njit(cache=True)
def _root(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@nb.njit(cache=True)
def _greedy_linear_forest(eu, ev, ew, n):
    """Weight of a feasible set of disjoint paths (heaviest edges first, degree <= 2, no cycle)."""
    parent = np.arange(n)
    deg = np.zeros(n, np.int64)
    total = 0.0
    for e in np.argsort(-ew):
        a, b = eu[e], ev[e]
        if deg[a] < 2 and deg[b] < 2:
            ra, rb = _root(parent, a), _root(parent, b)
            if ra != rb:
                parent[ra] = rb
                deg[a] += 1
                deg[b] += 1
                total += ew[e]
    return total


@nb.njit(cache=True)
def _penalised_forest(eu, ev, mw, order, n, deg):
    """Kruskal over the edges in `order` (decreasing penalised weight, all positive): the
    heaviest forest's penalised weight; fills each node's degree in it."""
    parent = np.arange(n)
    deg[:] = 0
    value = 0.0
    for e in order:
        ra, rb = _root(parent, eu[e]), _root(parent, ev[e])
        if ra != rb:
            parent[ra] = rb
            deg[eu[e]] += 1
            deg[ev[e]] += 1
            value += mw[e]
    return value


def forest_bound(eu: np.ndarray, ev: np.ndarray, ew: np.ndarray, n: int, iterations: int) -> float:
    """min over penalties lam >= 0 of: max forest under w_uv - lam_u - lam_v, plus 2 * sum(lam).

    For any set of disjoint paths P (degrees <= 2): w(P) = sum over P of the penalised weights
    + sum_v lam_v deg_P(v) <= (max forest, penalised) + 2 sum(lam); so every iterate is a bound.
    Penalties follow the subgradient deg - 2 with Polyak steps toward a greedy lower bound."""
    lower = _greedy_linear_forest(eu, ev, ew, n)
    lam = np.zeros(n)
    deg = np.zeros(n, np.int64)
    best = np.inf
    mu, stall = 2.0, 0
    for _ in range(iterations):
        mw = ew - lam[eu] - lam[ev]
        live = np.flatnonzero(mw > 0)
        order = live[np.argsort(-mw[live])]  # ties in any order: the forest's weight is the same
        value = _penalised_forest(eu, ev, mw, order, n, deg) + 2.0 * lam.sum()
        if value < best - 1e-12 * max(1.0, abs(best)) or best == np.inf:
            best, stall = value, 0
        else:
            stall += 1
            if stall >= 5:
                mu, stall = mu / 2.0, 0
        g = (deg - 2).astype(np.float64)
        g[(g < 0) & (lam <= 0)] = 0.0  # a penalty already at 0 cannot go lower
        norm2 = float(g @ g)
        gap = best - lower
        if norm2 == 0 or gap <= 1e-9 * max(1.0, best) or mu < 1e-4:
            break  # every degree fits (the forest is a set of paths: exact) or no progress left
        lam = np.maximum(0.0, lam + mu * gap / norm2 * g)
    return float(best)


def forest_iterations(n_edges: int) -> int:
    """Subgradient steps of the forest bound: 100 (converged on the quality corpora) up to
    500k edges, then fewer so a metrics pass stays near 5e7 edge visits (10 at least); every
    step gives a valid bound, fewer steps only a looser one."""
    return int(max(10, min(100, 50_000_000 // max(1, n_edges))))


def path_bound_forest(graph: Graph, iterations: int | None = None) -> float:
    """Held-Karp style Lagrangian upper bound on any Hamiltonian path's weight (jumps count 0;
    negative edges never raise the best path's positive part, so they are left out)."""
    if graph.n < 2:
        return 0.0
    eu, ev, ew = _positive_edges(graph.indptr, graph.indices, graph.weights)
    if len(ew) == 0:
        return 0.0
    steps = forest_iterations(graph.n_edges) if iterations is None else iterations
    return forest_bound(eu, ev, ew, graph.n, steps)


# Above this many graph entries the forest bound is left out: its steps each sort every
# edge, so at the paper's scale (235M documents, ~4G entries) it would take hours in the
# driver, while the two-best bound stays one linear pass (about 3M documents at k = 16).
FOREST_BOUND_MAX_EDGES = 50_000_000


def bound_method(graph: Graph, max_forest_edges: int = FOREST_BOUND_MAX_EDGES) -> str:
    """Which bound `path_bound` uses for this graph: "forest" (the tighter of both) or "two_best"."""
    return "forest" if graph.n_edges <= max_forest_edges else "two_best"


def path_bound(graph: Graph, iterations: int | None = None, max_forest_edges: int = FOREST_BOUND_MAX_EDGES) -> float:
    """Upper bound on any Hamiltonian path's weight: the smaller of the two-best-edges bound and
    the Lagrangian forest bound (both valid, so their minimum is too); the two-best bound
    alone on graphs larger than `max_forest_edges`."""
    if graph.n < 2:
        return 0.0
    if bound_method(graph, max_forest_edges) == "two_best":
        return path_bound_two_best(graph)
    return min(path_bound_two_best(graph), path_bound_forest(graph, iterations))


def label_agreement(labels, order: np.ndarray, seed: int = 0, random_trials: int = 5) -> dict:
    """Share of consecutive pairs with the same label, and the same for random orders."""
    order = np.asarray(order, dtype=np.int64)
    codes = _label_codes(labels)
    if len(order) < 2:
        return {"ordered": 0.0, "random": 0.0, "lift": 0.0}
    c = codes[order]
    ordered = float(np.mean(c[1:] == c[:-1]))
    rng = np.random.default_rng(seed)
    rand = []
    for _ in range(random_trials):
        r = codes[rng.permutation(order)]
        rand.append(float(np.mean(r[1:] == r[:-1])))
    random = float(np.mean(rand))
    return {"ordered": ordered, "random": random, "lift": ordered / random if random else float("inf")}


def _label_codes(labels) -> np.ndarray:
    """Integer codes of the labels (integer arrays are taken as codes already)."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    _, codes = np.unique(np.asarray([str(x) for x in labels]), return_inverse=True)
    return codes.astype(np.int64)
