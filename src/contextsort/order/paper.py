"""The paper's Algorithm 1: greedy maximum travelling-salesman path.

Start at an unvisited node of minimum degree; repeatedly move to the unvisited
neighbour with the HIGHEST similarity (the arXiv text's arg min is a typo); when
all neighbours are visited, jump (a weight-0 edge) to the unvisited node of
minimum degree. Every node appears exactly once.

Degree is the node's degree in the undirected kNN graph, fixed before the walk
(the paper's min_deg over the remaining set, with degrees of the full graph);
ties go to the lower index, so the order is deterministic.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..graph import Graph


@nb.njit(cache=True)
def paper_walk(indptr, indices, by_degree):
    n = len(indptr) - 1
    visited = np.zeros(n, np.bool_)
    path = np.empty(n, np.int64)
    p = 0
    cursor = 0  # position in by_degree of the next candidate start
    while p < n:
        while visited[by_degree[cursor]]:
            cursor += 1
        cur = by_degree[cursor]
        visited[cur] = True
        path[p] = cur
        p += 1
        while True:
            nxt = -1
            # neighbours are sorted by decreasing weight: the first unvisited one is the argmax
            for e in range(indptr[cur], indptr[cur + 1]):
                t = indices[e]
                if not visited[t]:
                    nxt = t
                    break
            if nxt < 0:
                break
            visited[nxt] = True
            path[p] = nxt
            p += 1
            cur = nxt
    return path


def paper_order(graph: Graph) -> np.ndarray:
    """Algorithm 1 on `graph`; returns a permutation of 0..N-1 (int64)."""
    if graph.n == 0:
        return np.empty(0, dtype=np.int64)
    return paper_walk(graph.indptr, graph.indices, min_degree_first(graph))


def min_degree_first(graph: Graph) -> np.ndarray:
    """Nodes by increasing degree, ties by index: the order in which Algorithm 1 picks starts."""
    return np.argsort(graph.degree, kind="stable").astype(np.int64)
