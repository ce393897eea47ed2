"""Partitioned kNN + dedup + traversal: the engine-agnostic half of scale-out.

Documents are split by their nearest k-means centroid (FAISS, trained on a
sample). Each partition is one independent task that runs the single-machine
stage functions (neighbors.knn_graph, dedup.find_duplicates,
graph.restrict_knn / graph_from_knn, order.compute_order) on its own documents,
searching its `spill` nearest neighbouring partitions too so that documents near
a border still find their true neighbours (and their near-duplicates). The
partitions are ordered by the same traversal run on the centroid graph, and their
paths are concatenated. Where the tasks run (a loop here, Ray tasks in
ray_engine.py) is the caller's choice: `mapper(fn, args_list)` yields results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numba as nb
import numpy as np

from ..dedup import find_duplicates
from ..graph import graph_from_knn, restrict_knn
from ..neighbors import knn_graph
from ..order import compute_order, order_inputs

DEFAULT_PARTITION_SIZE = 1_000_000  # documents per partition when the count is chosen automatically
MIN_PARTITION_SIZE = 500  # never split finer than this (border losses grow as partitions shrink)


@dataclass
class PartitionParams:
    """What the partitioned stages compute with (all of it changes the result)."""

    k: int = 10
    index: str = "auto"
    nprobe: int | None = None
    threshold: float = 0.97
    exact: bool = True
    algorithm: str = "paper"
    seed: int = 0
    partitions: int = 0  # 0: max(workers, ceil(N / DEFAULT_PARTITION_SIZE))
    spill: int = 1  # neighbouring partitions each partition also searches


@dataclass
class PartitionedResult:
    ids: np.ndarray  # int64 [N, k], global positions, -1 = none (same artifact as knn_graph's)
    sims: np.ndarray  # float32 [N, k]
    dup_of: np.ndarray  # int64 [N], -1 = kept (or invalid), else a kept document's position
    order: np.ndarray  # int64 [n_kept], global positions of the kept documents in output order
    assign: np.ndarray  # int32 [N], partition of each document (-1 = invalid embedding)
    info: dict = field(default_factory=dict)


def auto_partitions(n: int, workers: int = 1) -> int:
    """Enough partitions to keep every worker busy and each partition under DEFAULT_PARTITION_SIZE."""
    p = max(int(workers), math.ceil(n / DEFAULT_PARTITION_SIZE))
    return int(max(1, min(p, n // MIN_PARTITION_SIZE)))


def train_centroids(emb: np.ndarray, valid: np.ndarray, n_partitions: int, seed: int = 0, sample_per_centroid: int = 256) -> np.ndarray:
    """Spherical k-means centroids (float32 [P, d], unit norm) trained on a seeded sample of valid rows."""
    import faiss

    rows = np.flatnonzero(valid)
    d = emb.shape[1]
    if n_partitions <= 1 or len(rows) <= n_partitions:
        c = np.asarray(emb[rows[:1]], dtype=np.float32) if len(rows) else np.zeros((1, d), np.float32)
        return np.ascontiguousarray(c)
    n_train = min(len(rows), n_partitions * sample_per_centroid)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(rows, n_train, replace=False)) if n_train < len(rows) else rows
    x = np.ascontiguousarray(emb[sample], dtype=np.float32)
    km = faiss.Kmeans(d, n_partitions, niter=20, seed=1234 + seed, spherical=True, max_points_per_centroid=sample_per_centroid, verbose=False)
    km.train(x)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def assign_partitions(emb: np.ndarray, valid: np.ndarray, centroids: np.ndarray, batch: int = 262_144) -> np.ndarray:
    """Nearest centroid of every valid row (int32 [N]; -1 for invalid rows), streamed in batches."""
    import faiss

    n = emb.shape[0]
    out = np.full(n, -1, dtype=np.int32)
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        _, a = index.search(np.ascontiguousarray(emb[start:stop], dtype=np.float32), 1)
        out[start:stop] = a[:, 0]
    out[~np.asarray(valid, dtype=bool)] = -1
    return out


def neighbour_partitions(centroids: np.ndarray, spill: int) -> np.ndarray:
    """int64 [P, spill]: each partition's nearest other partitions by centroid similarity (-1 = none)."""
    p = centroids.shape[0]
    s = max(0, min(spill, p - 1))
    if s == 0:
        return np.full((p, 0), -1, dtype=np.int64)
    ids, _, _ = knn_graph(centroids, k=s, index="flat")
    return ids


def partition_sequence(centroids: np.ndarray, k: int, algorithm: str, seed: int = 0) -> np.ndarray:
    """Order of the partitions: the same traversal, walked on the centroid kNN graph."""
    p = centroids.shape[0]
    if p <= 1:
        return np.arange(p, dtype=np.int64)
    ids, sims, _ = knn_graph(centroids, k=min(k, p - 1), index="flat")
    return compute_order(algorithm, graph_from_knn(ids, sims), seed=seed)


def partition_task(
    emb: np.ndarray,
    rows: np.ndarray,
    n_own: int,
    text_hash: np.ndarray | None,
    params: PartitionParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """kNN + dedup + traversal of one partition with the single-machine stage functions.

    emb: float32 [n_union, d], the partition's own documents first, then those of
    its neighbouring partitions; rows: their global positions (int64 [n_union]).
    Returns, for the n_own own documents: kNN ids (global) and sims, dup_of (-1 or
    a global position with a smaller index, so chains across partitions always end),
    and the global positions of the kept own documents in traversal order.
    """
    rows = np.asarray(rows, dtype=np.int64)
    n_union = len(rows)
    # Own documents searched against own + neighbouring partitions.
    ids_l, sims, _ = knn_graph(emb, k=params.k, index=params.index, seed=1234 + params.seed, nprobe=params.nprobe, n_queries=n_own)
    kk = ids_l.shape[1]
    ids_g = np.where(ids_l >= 0, rows[np.maximum(ids_l, 0)], -1)

    # Dedup in a frame sorted by global position: find_duplicates keeps the smallest
    # index of a group, so every document points to a smaller global position.
    by_pos = np.argsort(rows, kind="stable")
    rank = np.empty(n_union, dtype=np.int64)
    rank[by_pos] = np.arange(n_union)
    ids_s = np.full((n_union, kk), -1, dtype=np.int64)
    sims_s = np.zeros((n_union, kk), dtype=np.float32)
    own_s = rank[:n_own]
    ids_s[own_s] = np.where(ids_l >= 0, rank[np.maximum(ids_l, 0)], -1)
    sims_s[own_s] = sims
    hashes = None
    if params.exact and text_hash is not None:
        hashes = np.asarray(text_hash, dtype=np.uint64)[by_pos]
    dup_s = find_duplicates(ids_s, sims_s, params.threshold, hashes)
    rows_s = rows[by_pos]
    dup_own = dup_s[own_s]
    dup_g = np.where(dup_own >= 0, rows_s[np.maximum(dup_own, 0)], -1)

    # Traversal over the kept own documents (edges to other partitions cannot be walked).
    is_own = np.zeros(n_union, dtype=bool)
    is_own[own_s] = True
    keep = is_own & (dup_s < 0)
    k_ids, k_sims = restrict_knn(ids_s, sims_s, dup_s, keep)
    kept_s = np.flatnonzero(keep)
    emb_kept = np.asarray(emb[by_pos[kept_s]]) if "emb" in order_inputs(params.algorithm) else None
    local = compute_order(params.algorithm, graph_from_knn(k_ids, k_sims), seed=params.seed, knn_ids=k_ids, emb=emb_kept)
    order_g = rows_s[np.flatnonzero(keep)][local]
    return ids_g, sims, dup_g, order_g


@nb.njit(cache=True)
def _resolve_chains(dup_of):
    # every pointer goes to a smaller index, so following it ends at a kept document
    for i in range(len(dup_of)):
        r = dup_of[i]
        if r < 0:
            continue
        while dup_of[r] >= 0:
            r = dup_of[r]
        dup_of[i] = r


def local_mapper(fn: Callable, args_list: Iterable[tuple]) -> Iterator[tuple[int, object]]:
    """Run the tasks one after another in this process (the engine-free mapper)."""
    for i, args in enumerate(args_list):
        yield i, fn(*args)


def partitioned_stages(
    emb: np.ndarray,
    valid: np.ndarray | None,
    text_hash: np.ndarray | None,
    params: PartitionParams,
    mapper: Callable[[Callable, Iterable[tuple]], Iterator[tuple[int, object]]] = local_mapper,
    workers: int = 1,
    out_ids: np.ndarray | None = None,
    out_sims: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> PartitionedResult:
    """The whole partitioned computation; `mapper` decides where the partition tasks run.

    out_ids / out_sims may be memory-mapped [N, k] arrays to fill (out-of-core).
    The result is checked: the order is a permutation of exactly the kept documents.
    """
    import time

    log = log or (lambda m: None)
    n, _ = emb.shape
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    n_valid = int(valid.sum())
    timings: dict[str, float] = {}
    t = time.perf_counter()
    p = params.partitions or auto_partitions(n_valid, workers)
    p = max(1, min(p, max(1, n_valid)))
    centroids = train_centroids(emb, valid, p, seed=params.seed)
    p = centroids.shape[0]
    assign = assign_partitions(emb, valid, centroids)
    timings["partition"] = time.perf_counter() - t
    t = time.perf_counter()
    nbrs = neighbour_partitions(centroids, params.spill)
    seq = partition_sequence(centroids, params.k, params.algorithm, seed=params.seed)
    members_order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[members_order], np.arange(-1, p + 1))
    members = [members_order[bounds[j + 1] : bounds[j + 2]] for j in range(p)]  # j = 0..p-1
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    k_eff = max(0, min(params.k, n - 1))
    ids = out_ids if out_ids is not None else np.empty((n, k_eff), dtype=np.int64)
    sims = out_sims if out_sims is not None else np.empty((n, k_eff), dtype=np.float32)
    ids[~valid] = -1
    sims[~valid] = 0
    dup_of = np.full(n, -1, dtype=np.int64)
    orders: list[np.ndarray | None] = [None] * p
    hashes = None if text_hash is None else np.asarray(text_hash, dtype=np.uint64)

    def task_args() -> Iterator[tuple]:
        for j in range(p):
            extra = [members[q] for q in nbrs[j] if q >= 0]
            rows = np.concatenate([members[j], *extra]) if extra else members[j]
            x = np.ascontiguousarray(emb[rows], dtype=np.float32)
            yield (x, rows, len(members[j]), None if hashes is None else hashes[rows], params)

    union_sizes = []
    for j, (ids_g, sims_j, dup_g, order_g) in mapper(partition_task, task_args()):
        m = members[j]
        kj = ids_g.shape[1]
        ids[m, :kj] = ids_g
        ids[m, kj:] = -1
        sims[m, :kj] = sims_j
        sims[m, kj:] = 0
        dup_of[m] = dup_g
        orders[j] = order_g
        union_sizes.append(len(m) + int(sum(sizes[q] for q in nbrs[j] if q >= 0)))
    timings["tasks"] = time.perf_counter() - t
    _resolve_chains(dup_of)
    order = np.concatenate([orders[j] for j in seq]) if p else np.empty(0, dtype=np.int64)
    kept_mask = valid & (dup_of < 0)
    n_kept = int(kept_mask.sum())
    if len(order) != n_kept or (n_kept and not kept_mask[order].all()) or len(np.unique(order)) != len(order):
        raise RuntimeError(
            f"partitioned merge is inconsistent: order has {len(order)} documents ({len(np.unique(order))} distinct), "
            f"{n_kept} are kept"
        )
    info = {
        "partitions": int(p),
        "spill": int(nbrs.shape[1]),
        "partition_sizes": {"min": int(sizes.min()), "median": int(np.median(sizes)), "max": int(sizes.max())},
        "searched_per_partition_max": int(max(union_sizes)) if union_sizes else 0,
        "partition_sequence": [int(x) for x in seq] if p <= 64 else f"{p} partitions",
        "partition_seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    log(f"[partitioned] {p} partitions (sizes {info['partition_sizes']}), spill {info['spill']}")
    return PartitionedResult(ids, sims, dup_of, order, assign, info)
