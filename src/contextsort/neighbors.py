"""k-nearest-neighbour graph with FAISS (inner product on unit vectors = cosine).

Exact search (IndexFlatIP) while N is small enough to be quick; above a threshold an
approximate method: "ivffs" (default, below), FAISS IVF-Flat ("ivf", one query at a time), "ivfgemm"
(contextsort.selfjoin: the same kind of IVF probes, batched per list into BLAS GEMMs),
"ivffs" (IVF over 4-bit PQ codes scanned with SIMD, candidates re-ranked exactly: 4x
faster than "ivf" at 1M, docs/benchmarks.md), HNSW, or IVF-PQ with exact re-ranking for
very large N. Self-matches are removed. Output: ids int64 [N, k] (-1 = none) and sims
float32 [N, k], sorted by decreasing similarity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba as nb
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
    if n <= FS_MIN_N:
        return "ivf"  # with the mid-size settings (MID_*): ivffs was measured from 50k up
    if n <= 20_000_000:
        return "ivffs"  # 3.8-4.1x faster than "ivf" at 1M, equal recall by similarity (docs/benchmarks.md)
    return "ivfpq"


IVF_TRAIN_PER_LIST = 64  # k-means training points per IVF list (FAISS warns below 39); 256 made 10M untrainable on 2 cores
FS_MIN_N = 50_000  # "ivffs" above this many documents (measured at 100k-1M, docs/benchmarks.md "kNN at 1M")
FS_NPROBE = 64  # "ivffs": lists probed per query
FS_CANDIDATES = 64  # "ivffs": candidates per query from the PQ codes, re-ranked exactly
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
    elif kind == "ivffs":
        # IVF + 4-bit PQ codes scanned with SIMD lookup tables (FAISS "fast scan"): a coarse
        # but cheap first pass; knn_graph re-ranks its candidates exactly (rerank_exact)
        nlist = int(nlist or max(1, min(65536, round(4 * math.sqrt(n)))))
        nlist = max(1, min(nlist, n // 39 or 1))
        m = d // 2 if d % 2 == 0 else d  # 4-bit codes of 2 dimensions each: 64 bytes at d=256
        ntrain = min(n, IVF_TRAIN_PER_LIST * nlist)
        rng = np.random.default_rng(seed)
        train = np.ascontiguousarray(emb[np.sort(rng.choice(n, ntrain, replace=False))] if ntrain < n else emb, dtype=np.float32)
        km = faiss.Kmeans(d, nlist, niter=10, seed=seed, spherical=True, max_points_per_centroid=IVF_TRAIN_PER_LIST)
        km.train(train)
        quantizer = faiss.IndexFlatIP(d)
        quantizer.add(km.centroids)  # a filled quantizer: idx.train below fits only the PQ codebooks
        idx = faiss.IndexIVFPQFastScan(quantizer, d, nlist, m, 4, faiss.METRIC_INNER_PRODUCT)
        idx.by_residual = True  # codes of the offset from the list's centroid: far finer than of the vector
        idx.pq.cp.seed = seed
        nthreads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # m tiny k-means (4,096 points, 16 centroids): threads only add overhead
        try:
            idx.train(train[:: max(1, len(train) // 16_384)])  # FAISS samples 4,096 points per codebook anyway
        finally:
            faiss.omp_set_num_threads(nthreads)
        idx.nprobe = min(nlist, nprobe or FS_NPROBE)
        params = {"nlist": nlist, "nprobe": idx.nprobe, "train": ntrain, "pq_m": m, "pq_bits": 4, "rerank": FS_CANDIDATES}
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
        raise ValueError(f"unknown index '{kind}' (flat, ivfgemm, ivf, ivffs, hnsw, ivfpq, auto)")
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
    n_cand = max(kq, min(n, FS_CANDIDATES)) if kind == "ivffs" else kq
    for start in range(0, nq, batch):
        q = np.ascontiguousarray(emb[start : min(nq, start + batch)], dtype=np.float32)
        s, i = idx.search(q, n_cand)
        if kind == "ivffs":
            s, i = rerank_exact(emb, q, i, kq)
        rows = np.arange(start, start + q.shape[0])[:, None]
        _drop_self(i, s, rows, ids[start : start + q.shape[0]], sims[start : start + q.shape[0]])
        if progress is not None:
            progress(q.shape[0])
    return ids, sims, KnnInfo(kind, k_eff, n, params)


def rerank_exact(emb: np.ndarray, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each query's candidate ids by exact inner product with emb's rows
    (no copy of emb); ties go to the lower id, so the result is deterministic."""
    if emb.dtype != np.float32:  # float16 embeddings: numba has no float16 arithmetic
        rows = np.unique(cand[cand >= 0])  # widen only the rows needed
        local = np.where(cand >= 0, np.searchsorted(rows, cand), -1)
        s, i = rerank_rows(np.asarray(emb[rows], dtype=np.float32), q, local, k)
        return s, np.where(i >= 0, rows[np.maximum(i, 0)], -1)
    return rerank_rows(emb, q, cand, k)


@nb.njit(cache=True, parallel=True, fastmath=True)
def rerank_rows(emb, q, cand, k):
    """Per query row: exact scores of its candidates, the k best kept sorted (ties: lower id)."""
    nq, nc = cand.shape
    out_s = np.zeros((nq, k), dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    for r in nb.prange(nq):
        best_s = np.full(k, -np.inf, dtype=np.float32)
        best_i = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
        for c in range(nc):
            j = cand[r, c]
            if j < 0:
                continue
            acc = np.float32(0.0)
            for t in range(q.shape[1]):
                acc += q[r, t] * emb[j, t]
            if acc < best_s[k - 1] or (acc == best_s[k - 1] and j >= best_i[k - 1]):
                continue
            seen = False
            for t in range(k):
                if best_i[t] == j:
                    seen = True
            if seen:
                continue
            pos = k - 1
            while pos > 0 and (best_s[pos - 1] < acc or (best_s[pos - 1] == acc and best_i[pos - 1] > j)):
                best_s[pos] = best_s[pos - 1]
                best_i[pos] = best_i[pos - 1]
                pos -= 1
            best_s[pos] = acc
            best_i[pos] = j
        for t in range(k):
            if best_i[t] != np.iinfo(np.int64).max:
                out_s[r, t] = best_s[t]
                out_i[r, t] = best_i[t]
    return out_s, out_i


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
