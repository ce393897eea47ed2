"""Partitioned kNN + dedup + traversal: the engine-agnostic half of scale-out.

Documents are split by their nearest k-means centroid (FAISS, trained on a
sample). kNN runs as one task per partition, searching the partition's own documents
and those of its `spill` nearest neighbouring partitions, so that documents near a
border still find their true neighbours (and their near-duplicates). Dedup runs on the
merged lists. The walk runs as one task per partition over its kept documents; the
partitions are ordered by the same walk on the centroid graph and their paths are
concatenated. Where the tasks run is the caller's choice: `mapper(fn, args_list)`
yields (index, result) (an engine's `map`, or `local_mapper`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from ..dedup import find_duplicates
from ..graph import graph_from_knn, restrict_knn
from ..neighbors import knn_graph
from ..order import compute_order, order_inputs

DEFAULT_PARTITION_SIZE = 1_000_000  # documents per partition when the count is chosen automatically
MIN_PARTITION_SIZE = 500  # never split finer than this (border losses grow as partitions shrink)
# The walk is one sequential pass over the kept graph (the paper ran it on one machine). Up to
# this many kept documents (about 12 GB of graph at k = 10) it walks the whole merged graph,
# exactly as a single machine does; beyond, one walk per partition. Walks per partition lose
# every link between partitions: on the Jargon File (links are lexical, partitions dense)
# 2 partitions cut the link rate from 0.433 to 0.335 (benchmarks/distributed.py quality).
GLOBAL_WALK_MAX_DOCS = 50_000_000


def walks_per_partition(n_kept: int) -> bool:
    """Whether the walk runs per partition (the merged graph is too big for one walk)."""
    return n_kept > GLOBAL_WALK_MAX_DOCS


@dataclass
class PartitionParams:
    """What the partitioned stages compute with (all of it changes the result)."""

    k: int = 10
    walk_k: int = 0  # neighbours in the traversal graph (0: = k); searched beyond k when larger
    index: str = "auto"
    nprobe: int | None = None
    threshold: float = 0.97
    exact: bool = True
    algorithm: str = "paper"
    seed: int = 0
    partitions: int = 0  # 0: max(workers, ceil(N / DEFAULT_PARTITION_SIZE))
    spill: int = 1  # neighbouring partitions each partition also searches
    # the traversal graph's signal, computed inside each partition task over its own + spill documents
    similarity: str = "dense"  # dense | lexical | hybrid
    lexical: str = "tfidf"  # term weighting
    hybrid_weight: float = 0.2
    lexical_method: str = "auto"
    tokens_dir: str | None = None  # the token store the tasks read ids from (lexical / hybrid)


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


def partition_knn_task(emb: np.ndarray, rows: np.ndarray, n_own: int, params: PartitionParams) -> tuple:
    """kNN of one partition's own documents against its own and its neighbouring partitions' ones.

    emb: float32 [n_union, d], the partition's own documents first, then those of its
    neighbouring partitions; rows: their global positions. Returns global ids and sims of
    the n_own own documents for the dense cosine (dedup always uses it), and, when
    params.similarity is lexical or hybrid, the traversal graph of that signal over the same
    documents (token ids read from params.tokens_dir here, on the worker: the same lexical
    terms as a single-machine run) as (ids, sims, params), else None.
    """
    rows = np.asarray(rows, dtype=np.int64)
    k, walk_k = params.k, params.walk_k or params.k
    if params.similarity == "dense":
        ids_l, sims, _ = knn_graph(emb, k=max(k, walk_k), index=params.index, seed=1234 + params.seed,
                                   nprobe=params.nprobe, n_queries=n_own)
        ids_g = to_global(ids_l, rows)
        walk = None if walk_k == k else (ids_g[:, :walk_k], np.asarray(sims[:, :walk_k]), {"similarity": "dense"})
        return ids_g[:, :k], np.asarray(sims[:, :k]), walk
    from ..embed.wordllama import TOKENIZER
    from ..pack import TokenStream
    from ..similarity import lexical_vectors_from_ids, similarity_graph
    from ..tokenizer import get_tokenizer
    from ..tokens import content_spans

    # the signal graph rescored with neighbours of every union document, so search all of them
    ids_l, sims, _ = knn_graph(emb, k=max(k, walk_k), index=params.index, seed=1234 + params.seed, nprobe=params.nprobe)
    if params.tokens_dir is None:
        raise ValueError(f"--similarity {params.similarity} on partitions needs the token store")
    stream = TokenStream.open(params.tokens_dir)
    start, length = content_spans(stream)
    lex = lexical_vectors_from_ids(stream.tokens, start[rows], length[rows], get_tokenizer(TOKENIZER), params.lexical)
    t_ids, t_sims, sinfo = similarity_graph(params.similarity, emb, None, walk_k, weighting=params.lexical,
                                            weight=params.hybrid_weight, lexical_method=params.lexical_method,
                                            seed=1234 + params.seed, dense_knn=(np.ascontiguousarray(ids_l[:, :walk_k]),
                                                                                np.ascontiguousarray(sims[:, :walk_k])),
                                            lexical=lex)
    signal = (to_global(t_ids[:n_own], rows), np.asarray(t_sims[:n_own]), {"similarity": sinfo.similarity, **sinfo.params})
    return to_global(ids_l[:n_own, :k], rows), np.asarray(sims[:n_own, :k]), signal


def to_global(ids_local: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Task-local neighbour ids -> global positions (-1 stays -1)."""
    return np.where(ids_local >= 0, rows[np.maximum(ids_local, 0)], -1)


def partition_order_task(ids: np.ndarray, sims: np.ndarray, emb: np.ndarray | None, algorithm: str, seed: int) -> np.ndarray:
    """The walk of one partition: its kept documents' kNN lists in local numbering (-1 = a
    neighbour outside the partition); returns local positions in traversal order."""
    return compute_order(algorithm, graph_from_knn(ids, sims), seed=seed, knn_ids=ids, emb=emb)


Mapper = Callable[[Callable, Iterable[tuple]], Iterator[tuple[int, object]]]


def local_mapper(fn: Callable, args_list: Iterable[tuple]) -> Iterator[tuple[int, object]]:
    """Run the tasks one after another in this process (the engine-free mapper)."""
    for i, args in enumerate(args_list):
        yield i, fn(*args)


@dataclass
class Partitions:
    """Documents split by nearest k-means centroid (assign = -1 for invalid embeddings)."""

    assign: np.ndarray  # int32 [N]
    centroids: np.ndarray  # float32 [P, d]

    @property
    def count(self) -> int:
        return int(self.centroids.shape[0])

    def members(self) -> list[np.ndarray]:
        """Global positions of each partition's documents, ascending."""
        by_part = np.argsort(self.assign, kind="stable")
        bounds = np.searchsorted(self.assign[by_part], np.arange(-1, self.count + 1))
        return [by_part[bounds[j + 1] : bounds[j + 2]] for j in range(self.count)]


def make_partitions(emb: np.ndarray, valid: np.ndarray, partitions: int, seed: int = 0) -> Partitions:
    """k-means partitions of the valid documents (FAISS, trained on a seeded sample)."""
    valid = np.asarray(valid, dtype=bool)
    p = max(1, min(int(partitions), max(1, int(valid.sum()))))
    centroids = train_centroids(emb, valid, p, seed=seed)
    return Partitions(assign_partitions(emb, valid, centroids), centroids)


def partitioned_knn(emb: np.ndarray, valid: np.ndarray, parts: Partitions, params: PartitionParams,
                    mapper: Mapper = local_mapper, out_ids: np.ndarray | None = None,
                    out_sims: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Dense kNN lists of every document, one task per partition (searching `spill` neighbouring ones)."""
    dense = PartitionParams(**{**params.__dict__, "similarity": "dense", "walk_k": 0})
    ids, sims, _, _, info = partitioned_graphs(emb, valid, parts, dense, mapper, out_ids, out_sims)
    return ids, sims, info


def partitioned_graphs(emb: np.ndarray, valid: np.ndarray, parts: Partitions, params: PartitionParams,
                       mapper: Mapper = local_mapper, out_ids: np.ndarray | None = None,
                       out_sims: np.ndarray | None = None):
    """(dense ids, dense sims, signal ids, signal sims, info), one task per partition.

    The dense lists (k per document) are for dedup; the signal lists (walk_k per document;
    None with params.similarity "dense" and walk_k = k) are the traversal graph of params.similarity, computed in the same task over the same
    own + spill documents, so lexical and hybrid runs are distributed like dense ones.
    """
    n = emb.shape[0]
    valid = np.asarray(valid, dtype=bool)
    members = parts.members()
    nbrs = neighbour_partitions(parts.centroids, params.spill)
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    k_eff = max(0, min(params.k, n - 1))
    walk_eff = max(0, min(params.walk_k or params.k, n - 1))
    ids = out_ids if out_ids is not None else np.empty((n, k_eff), dtype=np.int64)
    sims = out_sims if out_sims is not None else np.empty((n, k_eff), dtype=np.float32)
    with_signal = params.similarity != "dense" or (params.walk_k or params.k) != params.k
    t_ids = np.full((n, walk_eff), -1, dtype=np.int64) if with_signal else None
    t_sims = np.zeros((n, walk_eff), dtype=np.float32) if with_signal else None
    ids[~valid] = -1
    sims[~valid] = 0
    signal_params: dict = {}

    def task_args() -> Iterator[tuple]:
        for j in range(parts.count):
            extra = [members[q] for q in nbrs[j] if q >= 0]
            rows = np.concatenate([members[j], *extra]) if extra else members[j]
            yield (np.ascontiguousarray(emb[rows], dtype=np.float32), rows, len(members[j]), params)

    def put(m, out_i, out_s, src_i, src_s) -> None:
        kj = src_i.shape[1]
        out_i[m, :kj] = src_i
        out_i[m, kj:] = -1
        out_s[m, :kj] = src_s
        out_s[m, kj:] = 0

    for j, (ids_g, sims_j, signal) in mapper(partition_knn_task, task_args()):
        put(members[j], ids, sims, ids_g, sims_j)
        if signal is not None:
            put(members[j], t_ids, t_sims, signal[0], signal[1])
            signal_params[j] = signal[2]
    union = [len(members[j]) + int(sum(sizes[q] for q in nbrs[j] if q >= 0)) for j in range(parts.count)]
    info = {
        "partitions": parts.count,
        "spill": int(nbrs.shape[1]),
        "partition_sizes": {"min": int(sizes.min()), "median": int(np.median(sizes)), "max": int(sizes.max())} if len(sizes) else {},
        "searched_per_partition_max": int(max(union)) if union else 0,
    }
    if with_signal:
        info["signal_params"] = [signal_params[j] for j in sorted(signal_params)]
    return ids, sims, t_ids, t_sims, info


def partitioned_order(k_ids: np.ndarray, k_sims: np.ndarray, kept: np.ndarray, parts: Partitions, algorithm: str,
                      seed: int = 0, k: int = 10, emb: np.ndarray | None = None, mapper: Mapper = local_mapper) -> np.ndarray:
    """The walk inside each partition (one task each), partitions in the order of the same walk
    on their centroid graph. k_ids / k_sims: kNN lists of the kept documents, renumbered
    0..n_kept-1 (graph.restrict_knn); kept: their global positions. Returns kept-space positions."""
    n_kept = len(kept)
    part_of = np.asarray(parts.assign)[kept]
    by_part = np.argsort(part_of, kind="stable")
    bounds = np.searchsorted(part_of[by_part], np.arange(parts.count + 1))
    local = np.full(n_kept, -1, dtype=np.int64)
    wants_emb = "emb" in order_inputs(algorithm)

    def task_args() -> Iterator[tuple]:
        for j in range(parts.count):
            m = by_part[bounds[j] : bounds[j + 1]]
            local[m] = np.arange(len(m))
            sub = k_ids[m]
            sub_local = np.where(sub >= 0, local[np.maximum(sub, 0)], -1)
            local[m] = -1
            x = np.asarray(emb[kept[m]], dtype=np.float32) if wants_emb and emb is not None else None
            yield (sub_local, np.asarray(k_sims[m]), x, algorithm, seed)

    walks: list[np.ndarray | None] = [None] * parts.count
    for j, walk in mapper(partition_order_task, task_args()):
        walks[j] = by_part[bounds[j] : bounds[j + 1]][walk]
    seq = partition_sequence(parts.centroids, k, algorithm, seed=seed)
    return np.concatenate([walks[j] for j in seq]) if parts.count else np.empty(0, dtype=np.int64)


@dataclass
class PartitionedResult:
    ids: np.ndarray  # int64 [N, k], global positions, -1 = none (same artifact as knn_graph's)
    sims: np.ndarray  # float32 [N, k]
    dup_of: np.ndarray  # int64 [N], -1 = kept (or invalid), else a kept document's position
    order: np.ndarray  # int64 [n_kept], global positions of the kept documents in output order
    assign: np.ndarray  # int32 [N], partition of each document (-1 = invalid embedding)
    info: dict = field(default_factory=dict)


def partitioned_stages(
    emb: np.ndarray,
    valid: np.ndarray | None,
    text_hash: np.ndarray | None,
    params: PartitionParams,
    mapper: Mapper = local_mapper,
    workers: int = 1,
) -> PartitionedResult:
    """partition -> kNN -> dedup -> walk, as the pipeline's stages run them (for tests and benchmarks).

    The result is checked: the order is a permutation of exactly the kept documents.
    """
    n = emb.shape[0]
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    parts = make_partitions(emb, valid, params.partitions or auto_partitions(int(valid.sum()), workers), params.seed)
    ids, sims, info = partitioned_knn(emb, valid, parts, params, mapper)
    hashes = np.asarray(text_hash, dtype=np.uint64) if params.exact and text_hash is not None else None
    dup_of = find_duplicates(ids, sims, params.threshold, hashes, valid)
    keep = valid & (dup_of < 0)
    kept = np.flatnonzero(keep)
    k_ids, k_sims = restrict_knn(ids, sims, dup_of, keep)
    local = partitioned_order(k_ids, k_sims, kept, parts, params.algorithm, params.seed, params.k, emb, mapper)
    order = kept[local]
    check_order(order, keep)
    return PartitionedResult(ids, sims, dup_of, order, parts.assign, info)


def check_order(order: np.ndarray, keep: np.ndarray) -> None:
    """The order must be a permutation of exactly the kept documents."""
    n_kept = int(keep.sum())
    if len(order) != n_kept or (n_kept and not keep[order].all()) or len(np.unique(order)) != len(order):
        raise RuntimeError(f"partitioned merge is inconsistent: order has {len(order)} documents "
                           f"({len(np.unique(order))} distinct), {n_kept} are kept")
