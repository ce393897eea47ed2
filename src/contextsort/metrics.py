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

import hashlib

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


ALONG_CHUNK = 65_536  # consecutive pairs whose rows `adjacent_similarities_along` reads at once


def adjacent_similarities_along(rows, order: np.ndarray, chunk: int = ALONG_CHUNK) -> np.ndarray:
    """`adjacent_similarities` (the same floats) with the rows read chunk by chunk from `rows`
    (a `rowfile.RowFile`, or anything with `.take(ids)`), as float32.

    Reading a memory map in walk order makes the whole file resident (1 GB at 1M documents);
    `RowFile.take` copies each chunk's rows, gathered in file order, into the process's own
    buffer and leaves the file in the page cache. At 1M this pass took 2.5 s and 315 MB peak
    against 1.4 s and 703 MB for mapping slab pairs afresh (benchmarks/adjacent_reads.py).
    """
    order = np.asarray(order, dtype=np.int64)
    out = np.zeros(max(0, len(order) - 1), dtype=np.float64)
    for s in range(0, len(out), chunk):
        part = np.asarray(rows.take(order[s:s + chunk + 1]), dtype=np.float32)
        out[s:s + len(part) - 1] = adjacent_similarities(part, np.arange(len(part)))
    return out


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


STEPS_FILE = "steps.npz"  # the metrics stage's per-step arrays, which the report draws


def order_digest(order: np.ndarray) -> str:
    """Names one order (as int64 store positions): the report uses `STEPS_FILE` only for the
    order it was measured on."""
    return hashlib.blake2b(np.ascontiguousarray(order, dtype=np.int64).tobytes(), digest_size=16).hexdigest()


def path_weight(graph: Graph, order: np.ndarray) -> dict:
    """Sum and mean per step of graph similarities along the order, and the jump count."""
    return path_weight_of(path_edge_weights(graph, order))


def path_weight_of(w: np.ndarray) -> dict:
    """`path_weight` from the weight of each step."""
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
    eu = np.empty(m, np.int32)
    ev = np.empty(m, np.int32)
    ew = np.empty(m, np.float32)
    p = 0
    for u in range(len(indptr) - 1):
        for e in range(indptr[u], indptr[u + 1]):
            if indices[e] > u and weights[e] > 0:
                eu[p] = u
                ev[p] = indices[e]
                ew[p] = weights[e]
                p += 1
    return eu, ev, ew


def positive_edges(graph: Graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, weight) of each positive edge once, heaviest first (ties: graph order), so that
    the edges a forest picks lie near each other in memory. Sorted as one uint64 key per edge:
    the weight's float32 bits inverted (a positive float's bits grow with it) above its index."""
    eu, ev, ew = _positive_edges(graph.indptr, graph.indices, graph.weights)
    keys = (~ew.view(np.uint32)).astype(np.uint64) << np.uint64(32)
    keys |= np.arange(len(ew), dtype=np.uint64)
    keys.sort()
    by_weight = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return eu[by_weight], ev[by_weight], ew[by_weight]


@nb.njit(cache=True)
def _root(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@nb.njit(cache=True)
def _greedy_linear_forest(eu, ev, ew, n):
    """Weight of a feasible set of disjoint paths (edges heaviest first, degree <= 2, no cycle)."""
    parent = np.arange(n)
    deg = np.zeros(n, np.int64)
    total = 0.0
    for e in range(len(ew)):
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
def _forest_keys(eu, ev, ew, lam, keys, shift):
    """Sort keys of the edges whose penalised weight is positive: the float's bits above
    `shift` (monotone in a positive float), the edge's id below; returns their count."""
    low = (np.uint64(1) << np.uint64(shift)) - np.uint64(1)
    value = np.empty(1, np.float64)
    bits = value.view(np.uint64)
    m = 0
    for e in range(len(ew)):
        value[0] = float(ew[e]) - lam[eu[e]] - lam[ev[e]]
        if value[0] > 0:
            keys[m] = (bits[0] & ~low) | np.uint64(e)
            m += 1
    return m


@nb.njit(cache=True)
def _kruskal_keys(eu, ev, ew, lam, keys, shift, parent, deg, ends_u, ends_v):
    """Kruskal over `keys` (ascending: walked from the end, heaviest first): the heaviest forest's
    penalised weight; fills each node's degree in it. Keys equal in their high bits are first put
    in exact order, so the forest is a heaviest one, not nearly one. The edges' ends are first
    gathered in key order (`ends_u`, `ends_v`: buffers): loads that do not wait on each other,
    unlike those inside the union-find loop (a third less time at 100k documents)."""
    low = (np.uint64(1) << np.uint64(shift)) - np.uint64(1)
    sh = np.uint64(shift)
    for i in range(1, len(keys)):
        if keys[i] >> sh == keys[i - 1] >> sh:  # rare: insertion sort by the exact weight
            k = keys[i]
            e = np.int64(k & low)
            w = float(ew[e]) - lam[eu[e]] - lam[ev[e]]
            j = i - 1
            while j >= 0 and keys[j] >> sh == k >> sh:
                f = np.int64(keys[j] & low)
                if float(ew[f]) - lam[eu[f]] - lam[ev[f]] <= w:
                    break
                keys[j + 1] = keys[j]
                j -= 1
            keys[j + 1] = k
    for i in range(len(keys)):
        e = np.int64(keys[i] & low)
        ends_u[i] = eu[e]
        ends_v[i] = ev[e]
    for v in range(len(parent)):
        parent[v] = v
        deg[v] = 0
    total = 0.0
    for i in range(len(keys) - 1, -1, -1):
        a, b = ends_u[i], ends_v[i]
        ra, rb = _root(parent, a), _root(parent, b)
        if ra != rb:
            parent[ra] = rb
            deg[a] += 1
            deg[b] += 1
            total += float(ew[np.int64(keys[i] & low)]) - lam[a] - lam[b]
    return total


class PenalisedForest:
    """The heaviest forest under weights w_uv - lam_u - lam_v (buffers kept across steps)."""

    def __init__(self, eu: np.ndarray, ev: np.ndarray, ew: np.ndarray, n: int):
        self.eu, self.ev, self.ew, self.n = eu, ev, ew, n
        self.shift = max(1, int(len(ew)).bit_length())
        self.keys = np.empty(len(ew), np.uint64)
        self.parent = np.empty(n, np.int64)
        self.deg = np.zeros(n, np.int64)
        self.ends_u = np.empty(len(ew), eu.dtype)
        self.ends_v = np.empty(len(ew), ev.dtype)

    def value(self, lam: np.ndarray) -> float:
        """max forest under the penalties, plus 2 * sum(lam); self.deg holds the forest's degrees."""
        m = _forest_keys(self.eu, self.ev, self.ew, lam, self.keys, self.shift)
        keys = self.keys[:m]
        keys.sort()
        return _kruskal_keys(self.eu, self.ev, self.ew, lam, keys, self.shift, self.parent, self.deg,
                             self.ends_u, self.ends_v) + 2.0 * float(lam.sum())


@nb.njit(cache=True)
def _third_best(indptr, weights):
    """Each node's third heaviest positive edge weight (0 with fewer): what a path, which uses
    at most two edges of a node, must give up there at least."""
    n = len(indptr) - 1
    out = np.zeros(n)
    for i in range(n):
        b1 = b2 = b3 = 0.0
        for e in range(indptr[i], indptr[i + 1]):
            w = float(weights[e])
            if w > b1:
                b1, b2, b3 = w, b1, b2
            elif w > b2:
                b2, b3 = w, b2
            elif w > b3:
                b3 = w
        out[i] = b3
    return out


def forest_bound(eu: np.ndarray, ev: np.ndarray, ew: np.ndarray, n: int, iterations: int,
                 target: float | None = None, start: np.ndarray | None = None) -> float:
    """min over penalties lam >= 0 of: max forest under w_uv - lam_u - lam_v, plus 2 * sum(lam).

    For any set of disjoint paths P (degrees <= 2): w(P) = sum over P of the penalised weights
    + sum_v lam_v deg_P(v) <= (max forest, penalised) + 2 sum(lam); so every step's value is a
    bound, and the result is the smallest. Edges come heaviest first (`positive_edges`).
    The first step has no penalties (the maximum spanning forest), the second takes `start`
    (e.g. half of each node's third best edge weight); then deflected subgradient steps (the
    direction keeps half of the last one) of Polyak length toward `target`, a known path's
    weight such as the order's (the greedy path's if higher or none is given), the length
    halved after 5 steps without a better bound."""
    forest = PenalisedForest(eu, ev, ew, n)
    lower = _greedy_linear_forest(eu, ev, ew, n)
    goal = lower if target is None else max(lower, float(target))
    lam = np.zeros(n)
    step_dir = np.zeros(n)
    best = np.inf
    mu, stall = 2.0, 0
    for it in range(iterations):
        value = forest.value(lam)
        if value < best - 1e-12 * max(1.0, abs(best)) or best == np.inf:
            best, stall = value, 0
        else:
            stall += 1
            if stall >= 5:
                mu, stall = mu / 2.0, 0
                step_dir[:] = 0.0  # start the deflection afresh at each shorter step
        grad = (forest.deg - 2).astype(np.float64)
        grad[(grad < 0) & (lam <= 0)] = 0.0  # a penalty already at 0 cannot go lower
        gap = value - goal  # Polyak: this step's excess over a known path
        if not grad.any() or best - goal <= 1e-9 * max(1.0, best) or mu < 1e-4:
            break  # every degree fits (the forest is a set of paths: exact) or no progress left
        if it == 0 and start is not None:
            lam = np.maximum(0.0, start)
            continue
        step_dir = grad + 0.5 * step_dir
        step_dir[(step_dir < 0) & (lam <= 0)] = 0.0
        # squared norms by numpy's own sum, not BLAS: a BLAS dot wakes its thread pool, which
        # cost 14 ms a call on a loaded 2-core machine (more than the forest step itself)
        norm2 = float(np.square(step_dir).sum())
        if norm2 == 0:  # the last direction cancels this one: take this one alone
            step_dir, norm2 = grad, float(np.square(grad).sum())
        lam = np.maximum(0.0, lam + mu * gap / norm2 * step_dir)
    return float(best)


def forest_iterations(n_edges: int) -> int:
    """Subgradient steps of the forest bound: 100 up to 200k edges (every quality corpus), then
    fewer so a metrics pass stays near 2e7 edge visits (10 at least: 73 at 31k documents, 20 at
    100k). Chosen on the 31k BBC windows and the 100k synthetic corpus, where these steps end
    tighter than the 100 and 50 steps of the earlier rule (docs/benchmarks.md); every step gives
    a valid bound, fewer steps only a looser one."""
    return int(max(10, min(100, 20_000_000 // max(1, n_edges))))


def path_bound_forest(graph: Graph, iterations: int | None = None, target: float | None = None) -> float:
    """Held-Karp style Lagrangian upper bound on any Hamiltonian path's weight (jumps count 0;
    negative edges never raise the best path's positive part, so they are left out)."""
    if graph.n < 2:
        return 0.0
    eu, ev, ew = positive_edges(graph)
    if len(ew) == 0:
        return 0.0
    steps = forest_iterations(graph.n_edges) if iterations is None else iterations
    start = 0.5 * _third_best(graph.indptr, graph.weights)
    return forest_bound(eu, ev, ew, graph.n, steps, target, start)


# Above this many graph entries the forest bound is left out: its steps each sort every
# edge, so at the paper's scale (235M documents, ~4G entries) it would take hours in the
# driver, while the two-best bound stays one linear pass (about 3M documents at k = 16).
FOREST_BOUND_MAX_EDGES = 50_000_000


def bound_method(graph: Graph, max_forest_edges: int = FOREST_BOUND_MAX_EDGES) -> str:
    """Which bound `path_bound` uses for this graph: "forest" (the tighter of both) or "two_best"."""
    return "forest" if graph.n_edges <= max_forest_edges else "two_best"


def path_bound(graph: Graph, iterations: int | None = None, max_forest_edges: int = FOREST_BOUND_MAX_EDGES,
               target: float | None = None) -> float:
    """Upper bound on any Hamiltonian path's weight: the smaller of the two-best-edges bound and
    the Lagrangian forest bound (both valid, so their minimum is too); the two-best bound
    alone on graphs larger than `max_forest_edges`. `target`: a known path's weight (the
    order's), which steers the forest bound's steps; any value leaves the bound valid."""
    if graph.n < 2:
        return 0.0
    if bound_method(graph, max_forest_edges) == "two_best":
        return path_bound_two_best(graph)
    return min(path_bound_two_best(graph), path_bound_forest(graph, iterations, target))


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
