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

from .rowfile import SLAB_BYTES, RowFile, for_each_slab
from .selfjoin import ivf_gemm_knn

EXACT_MAX_N = 20_000  # flat search up to here; above it IVF (docs/benchmarks.md, "End to end against the raw tokenizer")
# 20k-100k documents: IVF tuned for a whole-corpus self-search, where flat search (N^2 scores)
# took 0.9x the tokenizer's time at 31k. Measured on 31k BBC windows (wordllama, 256-d):
# nlist 4 sqrt(N) = 704, nprobe 32, 39 training points per list: recall@10 0.993 against
# exact, 0.35-0.45x flat's seconds (training 64 per list, 25 iterations: same recall, 2.5x
# the training time). 5 k-means iterations, not 10: half the training (0.78 -> 0.39 s at 31k),
# recall@10 -0.0006 on the BBC windows where it was chosen and -0.0009 on 39k held-out
# manual windows, below the k-means seed's spread there (0.0012); dedup and every order
# measure unchanged (benchmarks/ivf_training.py, docs/benchmarks.md "Round 7").
# benchmarks/throughput.py --cli checks recall on every run.
MID_MAX_N = 100_000
MID_NPROBE = 32
MID_TRAIN_PER_LIST = 39
MID_NITER = 5


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
    if isinstance(emb, RowFile) and kind != "ivffs":
        emb = emb.read(0, n)  # the other kinds hold every vector anyway
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
        sample = np.sort(rng.choice(n, ntrain, replace=False)) if ntrain < n else None
        if isinstance(emb, RowFile):
            train = np.ascontiguousarray(emb.take(sample) if sample is not None else emb.read(0, n), dtype=np.float32)
        else:
            train = np.ascontiguousarray(emb[sample] if sample is not None else emb, dtype=np.float32)
        del sample
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
        if isinstance(emb, RowFile):
            for _, rows in emb.slabs(262_144):
                idx.add(np.ascontiguousarray(rows, dtype=np.float32))
        else:
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
    rerank_batch: int = 65_536,
) -> tuple[np.ndarray, np.ndarray, KnnInfo]:
    """Each document's k most similar other documents.

    emb must be unit-norm rows, an array or a `rowfile.RowFile`. k is capped at N-1.
    `progress(n_done)` is called after each query batch. `n_queries` limits the queries
    to the first rows (all rows stay searchable): a partition searches its neighbours'
    documents too. A RowFile with index "ivffs" is never mapped: training sample, adds and
    queries are explicit reads and each `rerank_batch` queries' candidates are re-ranked in
    one pass of slabs over the file (`rerank_from_file`), so the file stays in the page
    cache, out of the RSS (docs/benchmarks.md, "Memory at 1M"); same results as the array.
    Other kinds read a RowFile whole into memory.
    """
    n = emb.shape[0]
    kind = choose_index(n, index)
    if isinstance(emb, RowFile) and kind == "ivffs":
        return knn_graph_from_file(emb, k, seed, nprobe, batch, progress, n_queries, nlist, rerank_batch)
    if isinstance(emb, RowFile):
        emb = emb.read(0, n)
    nq = n if n_queries is None else int(n_queries)
    k_eff = max(0, min(k, n - 1))
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


def knn_graph_from_file(
    rows: RowFile,
    k: int,
    seed: int,
    nprobe: int | None,
    batch: int,
    progress,
    n_queries: int | None,
    nlist: int | None,
    rerank_batch: int,
) -> tuple[np.ndarray, np.ndarray, KnnInfo]:
    """knn_graph's "ivffs" path over a RowFile (see knn_graph): FAISS searches `batch`
    queries at a time as from an array (the same candidates), then each `rerank_batch`
    queries are re-ranked together, one pass over the file each."""
    n = rows.shape[0]
    nq = n if n_queries is None else int(n_queries)
    k_eff = max(0, min(k, n - 1))
    ids = np.full((nq, k_eff), -1, dtype=np.int64)
    sims = np.zeros((nq, k_eff), dtype=np.float32)
    if k_eff == 0:
        return ids, sims, KnnInfo("ivffs", k_eff, n)
    idx, params = build_index(rows, "ivffs", seed=seed, nprobe=nprobe, nlist=nlist)
    kq = k_eff + 1
    n_cand = max(kq, min(n, FS_CANDIDATES))
    group = max(batch, rerank_batch // batch * batch)
    for g0 in range(0, nq, group):
        q = np.ascontiguousarray(rows.read(g0, min(nq, g0 + group)), dtype=np.float32)
        cand = np.empty((q.shape[0], n_cand), np.int64)
        for b0 in range(0, q.shape[0], batch):
            cand[b0 : b0 + batch] = idx.search(q[b0 : b0 + batch], n_cand)[1]
        s, i = rerank_from_file(rows, q, cand, kq)
        del cand
        m = q.shape[0]
        _drop_self(i, s, np.arange(g0, g0 + m)[:, None], ids[g0 : g0 + m], sims[g0 : g0 + m])
        if progress is not None:
            for b0 in range(0, m, batch):
                progress(min(batch, m - b0))
    return ids, sims, KnnInfo("ivffs", k_eff, n, params)


def rerank_from_file(rows: RowFile, q: np.ndarray, cand: np.ndarray, k: int, slab_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`rerank_exact` with the candidates' rows read from a RowFile slab by slab (one pass
    over the file, the slabs shared among numba's number of threads): each candidate's
    score is computed while its slab is in a buffer, then `rerank_scored` keeps the k best
    (the same floats and tie rules as `rerank_rows`: bit-identical results)."""
    nq, nc = cand.shape
    n = rows.shape[0]
    q = np.ascontiguousarray(q, dtype=np.float32)
    scores = np.zeros((nq, nc), np.float32)
    slab_rows = max(1, slab_rows or SLAB_BYTES // max(1, rows.row_bytes))
    flat = cand.ravel()
    pairs = np.flatnonzero(flat >= 0)
    slab_of = flat[pairs] // slab_rows
    order = np.argsort(slab_of, kind="stable")
    pairs, slab_of = pairs[order], slab_of[order]
    del order
    n_slabs = -(-n // slab_rows)
    ptr = np.searchsorted(slab_of, np.arange(n_slabs + 1))
    del slab_of

    def visit(s: int, s0: int, slab: np.ndarray) -> None:
        slab_scores(q, np.ascontiguousarray(slab, dtype=np.float32), s0, cand, pairs[ptr[s]:ptr[s + 1]], scores)

    for_each_slab(rows, slab_rows, ptr[1:] > ptr[:-1], nb.get_num_threads(), visit)
    return rerank_scored(scores, cand, k)


@nb.njit(nogil=True, cache=True, fastmath=True)
def slab_scores(q, slab, s0, cand, pairs, out):
    """out[r, c] = q[r] . slab[cand[r, c] - s0] for the flat pair indices p = r * nc + c in
    `pairs`, accumulated in float32 with the loop and flags of `rerank_rows` (same floats).
    Serial and without the GIL: `rerank_from_file` runs one slab per thread."""
    nc = cand.shape[1]
    for u in range(len(pairs)):
        r = pairs[u] // nc
        c = pairs[u] - r * nc
        j = cand[r, c] - s0
        acc = np.float32(0.0)
        for t in range(q.shape[1]):
            acc += q[r, t] * slab[j, t]
        out[r, c] = acc


@nb.njit(cache=True, inline="always")
def insert_best(best_s, best_i, acc, j):
    """Put candidate j with score acc into the k best so far (sorted by score, ties to the
    lower id; an id already there is not added again). Shared by both re-rankers, so their
    selections cannot drift apart."""
    k = len(best_s)
    if acc < best_s[k - 1] or (acc == best_s[k - 1] and j >= best_i[k - 1]):
        return
    for t in range(k):
        if best_i[t] == j:
            return
    pos = k - 1
    while pos > 0 and (best_s[pos - 1] < acc or (best_s[pos - 1] == acc and best_i[pos - 1] > j)):
        best_s[pos] = best_s[pos - 1]
        best_i[pos] = best_i[pos - 1]
        pos -= 1
    best_s[pos] = acc
    best_i[pos] = j


@nb.njit(cache=True, inline="always")
def no_best(k):
    """The k best of a row before any candidate: (scores -inf, ids past every real id)."""
    return np.full(k, -np.inf, dtype=np.float32), np.full(k, np.iinfo(np.int64).max, dtype=np.int64)


@nb.njit(cache=True, inline="always")
def store_best(best_s, best_i, out_s, out_i, r):
    """Row r of the outputs: the entries `insert_best` filled (the rest stay 0 / -1)."""
    for t in range(len(best_s)):
        if best_i[t] != np.iinfo(np.int64).max:
            out_s[r, t] = best_s[t]
            out_i[r, t] = best_i[t]


@nb.njit(cache=True, parallel=True, fastmath=True)
def rerank_scored(scores, cand, k):
    """`rerank_rows`' selection over precomputed scores: per query row the k best candidates
    sorted (ties: lower id; repeats of an id kept once; cand < 0 skipped)."""
    nq, nc = cand.shape
    out_s = np.zeros((nq, k), dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    for r in nb.prange(nq):
        best_s, best_i = no_best(k)
        for c in range(nc):
            j = cand[r, c]
            if j < 0:
                continue
            acc = scores[r, c]
            insert_best(best_s, best_i, acc, j)
        store_best(best_s, best_i, out_s, out_i, r)
    return out_s, out_i


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
        best_s, best_i = no_best(k)
        for c in range(nc):
            j = cand[r, c]
            if j < 0:
                continue
            acc = np.float32(0.0)
            for t in range(q.shape[1]):
                acc += q[r, t] * emb[j, t]
            insert_best(best_s, best_i, acc, j)
        store_best(best_s, best_i, out_s, out_i, r)
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
