"""The paper's baselines kNN (documents repeat) and Clustering (k-means); Standard (random) is in __init__."""

from __future__ import annotations

import math

import numpy as np

from ..graph import Graph


def knn_order(graph: Graph, knn_ids: np.ndarray | None = None, seed: int = 0, neighbors: int | None = None) -> np.ndarray:
    """The kNN baseline: every document followed by its retrieved neighbours; NOT a permutation.

    Groups [d, nn_1(d), ..., nn_m(d)] for every document d, the groups in a seeded random
    order (they are independent training examples). A document appears once as the head of
    its own group plus once per list it is retrieved in, so the output has about N * (m + 1)
    entries; `np.bincount(order, minlength=N)` gives each document's count.
    `neighbors` (m) defaults to all retrieved neighbours; without `knn_ids` the heaviest
    graph edges stand in for the retrieved lists.
    """
    n = graph.n
    if n == 0:
        return np.empty(0, np.int64)
    if knn_ids is None:
        from .release import graph_top

        k = int(graph.degree.max()) if graph.n_edges else 0
        knn_ids = graph_top(graph, neighbors if neighbors is not None else min(k, 10))
    ids = np.asarray(knn_ids, dtype=np.int64)
    if ids.shape[0] != n:
        raise ValueError(f"knn_ids has {ids.shape[0]} rows for a graph of {n} nodes")
    m = ids.shape[1] if neighbors is None else max(0, min(int(neighbors), ids.shape[1]))
    groups = np.concatenate([np.arange(n, dtype=np.int64)[:, None], ids[:, :m]], axis=1)
    groups = groups[np.random.default_rng(seed).permutation(n)]
    flat = groups.ravel()
    return flat[flat >= 0].copy()


def default_clusters(n: int) -> int:
    """sqrt(N) clusters (about sqrt(N) documents each), at least 1 and at most N."""
    return max(1, min(n, int(round(math.sqrt(n)))))


def cluster_order(graph: Graph, emb: np.ndarray | None = None, seed: int = 0, clusters: int | None = None) -> np.ndarray:
    """The Clustering ablation: FAISS k-means on the embeddings; clusters and their members in random order."""
    n = graph.n
    if n == 0:
        return np.empty(0, np.int64)
    if emb is None:
        raise ValueError("the 'cluster' order needs the document embeddings")
    x = np.ascontiguousarray(emb, dtype=np.float32)
    if x.shape[0] != n:
        raise ValueError(f"emb has {x.shape[0]} rows for a graph of {n} nodes")
    nc = default_clusters(n) if clusters is None else int(clusters)
    if nc < 1:
        raise ValueError(f"clusters must be >= 1 (got {clusters})")
    nc = min(nc, n)
    assign = kmeans_assign(x, nc, seed)
    rng = np.random.default_rng(seed)
    cluster_rank = rng.permutation(nc)[assign]  # random order of clusters
    within = rng.random(n)  # random order inside a cluster
    return np.lexsort((within, cluster_rank)).astype(np.int64)


def kmeans_assign(x: np.ndarray, nc: int, seed: int = 0, niter: int = 20) -> np.ndarray:
    """Nearest k-means centroid of each row (FAISS; inner product on unit vectors)."""
    import faiss

    if nc == 1:
        return np.zeros(x.shape[0], np.int64)
    km = faiss.Kmeans(x.shape[1], nc, niter=niter, seed=int(seed) + 1, spherical=True, verbose=False)
    km.train(x)
    _, a = km.index.search(x, 1)
    return a[:, 0].astype(np.int64)
