"""Quality measures of an ordering (names used everywhere: CLI, manifest, benchmarks).

- adjacent_similarity: mean cosine similarity of consecutive documents.
- path_weight: sum (and mean per edge) of graph similarities along the order; jumps count 0.
- path_bound: upper bound on path_weight: each node's two heaviest edges, summed and halved.
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


def path_bound(graph: Graph) -> float:
    """Upper bound on any Hamiltonian path's weight: half the sum of each node's two best edges."""
    return float(_two_best(graph.indptr, graph.weights)) if graph.n else 0.0


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
