"""k-nearest-neighbour graph with FAISS (inner product on unit vectors = cosine).

Exact search (IndexFlatIP) while N is small enough to be quick; above a threshold an
approximate method: FAISS IVF-Flat ("ivf", default, one query at a time), "ivfgemm"
(contextsort.selfjoin: the same kind of IVF probes, batched per list into BLAS GEMMs),
HNSW, or IVF-PQ with exact re-ranking for very large N. Self-matches are removed. Output: ids int64 [N, k] (-1 = none) and sims
float32 [N, k], sorted by decreasing similarity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .selfjoin import ivf_gemm_knn

EXACT_MAX_N = 20_000  # flat search up to here; above it IVF (docs/benchmarks.md, "End to end against the raw tokenizer")
# 20k-100k documents: IVF tuned for a whole-corpus self-search, where flat search (N^2 scores)
# took 0.9x the tokenizer's time at 31k. Measured on 31k BBC windows (wordllama, 256-d):
# nlist 4 sqrt(N) = 704, nprobe 32, 39 training points per list, 10 k-means iterations:
# recall@10 0.993 against exact, 0.35-0.45x flat's seconds (training 64 per list, 25
# iterations: same recall, 2.5x the training time). benchmarks/throughput.py --cli checks
# recall on every run.
MID_MAX_N = 100_000
MID_NPROBE = 32
MID_TRAIN_PER_LIST = 39
MID_NITER = 10


@dataclass
class KnnInfo:
    """How the graph was built (goes to the manifest)."""

    index: str
    k: int
    n: int
    params: dict = field(default_factory=dict)


def choose_index(n: int, index: str = "auto") -> str:
    if index != "auto":
        return index
    if n <= EXACT_MAX_N:
        return "flat"
    if n <= 20_000_000:
        return "ivf"  # "ivfgemm" is not yet measured faster at equal recall (docs/benchmarks.md)
    return "ivfpq"


IVF_TRAIN_PER_LIST = 64  # k-means training points per IVF list (FAISS warns below 39); 256 made 10M untrainable on 2 cores
IVF_MAX_DEFAULT_NPROBE = 64  # nlist // 32 alone makes each query scan N/32 vectors: quadratic in N


def build_index(emb: np.ndarray, kind: str, seed: int = 1234, nprobe: int | None = None, nlist: int | None = None):
    """Build and fill a FAISS index of `kind` over emb; return (index, params).

    IVF defaults: nlist = 4 sqrt(N), trained on IVF_TRAIN_PER_LIST points per list,
    nprobe = nlist/32 clamped to [16, 64] (so a query costs O(sqrt N), not O(N)).
    """
    import faiss

    n, d = emb.shape
    params: dict = {}
    mid = n <= MID_MAX_N
    if kind == "flat":
        idx = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        idx = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = 80
        idx.hnsw.efSearch = max(64, 4 * 16)
        params = {"M": 32, "efConstruction": 80, "efSearch": idx.hnsw.efSearch}
    elif kind in ("ivf", "ivfpq"):
        nlist = int(nlist or max(1, min(65536, round(4 * math.sqrt(n)))))
        nlist = max(1, min(nlist, n // 39 or 1))  # FAISS wants >= 39 training points per list
        quantizer = faiss.IndexFlatIP(d)
        if kind == "ivf":
            idx = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            m = 32 if d % 32 == 0 else 16 if d % 16 == 0 else 8 if d % 8 == 0 else 1
            base = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            idx = base
        idx.cp.seed = seed
        if mid:
            idx.cp.niter = MID_NITER
        ntrain = min(n, (MID_TRAIN_PER_LIST if mid else IVF_TRAIN_PER_LIST) * nlist)
        rng = np.random.default_rng(seed)
        train = emb[np.sort(rng.choice(n, ntrain, replace=False))] if ntrain < n else emb
        idx.train(np.ascontiguousarray(train, dtype=np.float32))
        floor = MID_NPROBE if mid else 16
        idx.nprobe = nprobe or min(nlist, max(floor, min(IVF_MAX_DEFAULT_NPROBE, nlist // 32)))
        params = {"nlist": nlist, "nprobe": idx.nprobe, "train": ntrain, "niter": idx.cp.niter}
        if kind == "ivfpq":
            params["pq_m"] = idx.pq.M
            idx = faiss.IndexRefineFlat(idx)
            idx.k_factor = 4.0
            params["refine_k_factor"] = 4.0
    else:
        raise ValueError(f"unknown index '{kind}' (flat, ivfgemm, ivf, hnsw, ivfpq, auto)")
    if kind == "hnsw":
        # HNSW insertion order depends on thread timing: build on one thread so the
        # graph (and the output) is identical run to run.
        nthreads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
    try:
        for start in range(0, n, 262_144):
            idx.add(np.ascontiguousarray(emb[start : start + 262_144], dtype=np.float32))
    finally:
        if kind == "hnsw":
            faiss.omp_set_num_threads(nthreads)
    return idx, params


def knn_graph(
    emb: np.ndarray,
    k: int = 10,
    index: str = "auto",
    seed: int = 1234,
    nprobe: int | None = None,
    batch: int = 16_384,
    progress=None,
    n_queries: int | None = None,
    nlist: int | None = None,
) -> tuple[np.ndarray, np.ndarray, KnnInfo]:
    """Each document's k most similar other documents.

    emb must be unit-norm rows. k is capped at N-1. `progress(n_done)` is called
    after each query batch. `n_queries` limits the queries to the first rows (all
    rows stay searchable): a partition searches its neighbours' documents too.
    """
    n = emb.shape[0]
    nq = n if n_queries is None else int(n_queries)
    k_eff = max(0, min(k, n - 1))
    kind = choose_index(n, index)
    ids = np.full((nq, k_eff), -1, dtype=np.int64)
    sims = np.zeros((nq, k_eff), dtype=np.float32)
    if k_eff == 0:
        return ids, sims, KnnInfo(kind, k_eff, n)
    if kind == "ivfgemm":
        ids, sims, params = ivf_gemm_knn(emb, k_eff, nlist=nlist, nprobe=nprobe, seed=seed, progress=progress, n_queries=nq)
        return ids, sims, KnnInfo(kind, k_eff, n, params)
    idx, params = build_index(emb, kind, seed=seed, nprobe=nprobe, nlist=nlist)
    kq = k_eff + 1
    for start in range(0, nq, batch):
        q = np.ascontiguousarray(emb[start : min(nq, start + batch)], dtype=np.float32)
        s, i = idx.search(q, kq)
        rows = np.arange(start, start + q.shape[0])[:, None]
        _drop_self(i, s, rows, ids[start : start + q.shape[0]], sims[start : start + q.shape[0]])
        if progress is not None:
            progress(q.shape[0])
    return ids, sims, KnnInfo(kind, k_eff, n, params)


def _drop_self(i: np.ndarray, s: np.ndarray, rows: np.ndarray, out_i: np.ndarray, out_s: np.ndarray) -> None:
    """Remove each query's own id from its result row (or the last entry if absent)."""
    k = out_i.shape[1]
    is_self = i == rows
    # Order key: keep non-self entries in their rank order, push self to the end.
    key = np.where(is_self, np.iinfo(np.int64).max, np.arange(i.shape[1])[None, :])
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    out_i[:] = np.take_along_axis(i, order, axis=1)
    out_s[:] = np.take_along_axis(s, order, axis=1)
    out_s[out_i < 0] = 0.0
