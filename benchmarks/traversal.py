"""Traversal speed: the numba Algorithm 1 vs a plain-Python Algorithm 1 on the same graph.

Prints JSON: per (N, graph kind) the docs/s of graph build and of the traversal (median
of --repeats runs), the plain-Python baseline's docs/s and the ratio. Graphs are
synthetic kNN lists with k = 10: "random" (neighbours uniform over all documents) and
"clustered" (neighbours drawn inside clusters of 100, plus 10% cross-cluster links).

    python benchmarks/traversal.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

from contextsort.graph import graph_from_knn
from contextsort.order.paper import paper_order


def synthetic_knn(n: int, k: int, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        ids = rng.integers(0, n, size=(n, k), dtype=np.int64)
    else:
        size = 100
        base = (np.arange(n) // size * size)[:, None]
        ids = base + rng.integers(0, size, size=(n, k))
        ids = np.minimum(ids, n - 1)
        cross = rng.random((n, k)) < 0.1
        ids[cross] = rng.integers(0, n, size=int(cross.sum()))
    sims = np.sort(rng.random((n, k)).astype(np.float32), axis=1)[:, ::-1].copy()
    ids[ids == np.arange(n)[:, None]] = -1
    return ids, sims


def python_algorithm1(indptr, indices, degree) -> list[int]:
    """Algorithm 1 in plain Python on the same CSR (rows sorted by decreasing weight)."""
    n = len(indptr) - 1
    indptr = indptr.tolist()
    indices = indices.tolist()
    by_degree = sorted(range(n), key=lambda i: (degree[i], i))
    visited = [False] * n
    path = []
    cursor = 0
    while len(path) < n:
        while visited[by_degree[cursor]]:
            cursor += 1
        cur = by_degree[cursor]
        visited[cur] = True
        path.append(cur)
        while True:
            nxt = -1
            for e in range(indptr[cur], indptr[cur + 1]):
                t = indices[e]
                if not visited[t]:
                    nxt = t
                    break
            if nxt < 0:
                break
            visited[nxt] = True
            path.append(nxt)
            cur = nxt
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--kinds", nargs="+", default=["random", "clustered"])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--python-repeats", type=int, default=1)
    a = ap.parse_args()

    # compile once on a tiny graph so timings exclude JIT
    ids, sims = synthetic_knn(1000, a.k, "random")
    paper_order(graph_from_knn(ids, sims))

    results = []
    for n in a.sizes:
        for kind in a.kinds:
            ids, sims = synthetic_knn(n, a.k, kind)
            t = time.perf_counter()
            g = graph_from_knn(ids, sims)
            build_s = time.perf_counter() - t
            times = []
            for _ in range(a.repeats):
                t = time.perf_counter()
                order = paper_order(g)
                times.append(time.perf_counter() - t)
            assert len(np.unique(order)) == n
            py_times = []
            deg = g.degree.tolist()
            for _ in range(a.python_repeats):
                t = time.perf_counter()
                py = python_algorithm1(g.indptr, g.indices, deg)
                py_times.append(time.perf_counter() - t)
            same = bool(np.array_equal(np.asarray(py), order))
            med = statistics.median(times)
            py_med = statistics.median(py_times)
            results.append(
                {
                    "n": n,
                    "graph": kind,
                    "k": a.k,
                    "edges": g.n_edges,
                    "graph_build_s": round(build_s, 4),
                    "traversal_s_median": round(med, 5),
                    "traversal_docs_per_s": round(n / med),
                    "python_s_median": round(py_med, 3),
                    "python_docs_per_s": round(n / py_med),
                    "speedup_vs_python": round(py_med / med, 1),
                    "same_order_as_python": same,
                }
            )
    print(json.dumps({"benchmark": "traversal", "machine": platform.machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
