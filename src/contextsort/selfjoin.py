"""kNN graph of a whole corpus as IVF search batched by list (index "ivfgemm").

Searching every document against an IVF index scans one query at a time and leaves the
CPU's matrix units idle. Here every document is a query and a target at once, so the
search becomes a join: documents are grouped by their nearest k-means centroid (an IVF
list); each list is multiplied with itself in one BLAS GEMM, and every document is
scored against its own nearest `nprobe` other lists, batched per list (all the
documents probing list M times M's documents, one GEMM). A numba kernel keeps each
document's top k. The candidates are those of FAISS IVF-Flat at the same nprobe; only
the arithmetic is blocked. (`JOIN_PROBE` > 1 joins whole lists with their centroid's
nearest lists and offers each score to both sides; measured cheaper but it lost recall on
real embeddings, so the default probes per document.)

Deterministic: k-means is seeded, lists and blocks are processed in a fixed order, and
each document's candidates are merged in a fixed order (ties keep the first seen).
No copy of the embeddings is made: each block gathers the rows it multiplies.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba as nb
import numpy as np

TRAIN_PER_LIST = 64  # k-means training points per list (FAISS warns below 39)
DEFAULT_NPROBE = 16  # lists each document is scored against (its own + the nearest others); docs/benchmarks.md
JOIN_PROBE = 1  # lists joined with each list as a whole (1: the list with itself)
SPILL_SHARE = 1.0  # share of documents (least similar to their centroid first) probed one by one:
# probing by list centroid alone (SPILL_SHARE 0, JOIN_PROBE 8) lost recall on real embeddings
SPILL_CHUNK = 262_144  # documents probed per pass (their (doc, list) pairs are held at once)
ROW_BLOCK = 2048  # query rows per GEMM
COL_BLOCK = 32_768  # target columns per GEMM: ROW_BLOCK x COL_BLOCK float32 = 256 MB at most


def default_nlist(n: int) -> int:
    """sqrt(N) lists of sqrt(N) documents: big enough blocks for an efficient GEMM, and with a
    fixed nprobe each document is scored against a share of the corpus that falls as
    1/sqrt(N), as with FAISS IVF's defaults (at least 39 training points per list)."""
    return max(1, min(round(math.sqrt(n)), n // 39 or 1))


def default_nprobe(nlist: int) -> int:
    return max(1, min(nlist, DEFAULT_NPROBE))


@nb.njit(cache=True, inline="always")
def insert_sorted(best_s, best_i, s, j):
    """Insert (s, j) into a row kept sorted by decreasing score (the caller checked s beats the
    last); a j already in the row is not added twice (spilled documents meet some pairs twice)."""
    for t in range(best_i.shape[0]):
        if best_i[t] == j:
            return
    pos = best_s.shape[0] - 1
    while pos > 0 and best_s[pos - 1] < s:
        best_s[pos] = best_s[pos - 1]
        best_i[pos] = best_i[pos - 1]
        pos -= 1
    best_s[pos] = s
    best_i[pos] = j


@nb.njit(cache=True, parallel=True)
def merge_rows(scores, row_ids, col_ids, best_s, best_i, n_queries):
    """Offer every score of a block to its row document's top k (never itself)."""
    m, c = scores.shape
    k = best_s.shape[1]
    for a in nb.prange(m):
        r = row_ids[a]
        if r >= n_queries:
            continue
        bs = best_s[r]
        bi = best_i[r]
        thresh = bs[k - 1]
        for j in range(c):
            s = scores[a, j]
            if s > thresh:
                cid = col_ids[j]
                if cid == r:
                    continue
                insert_sorted(bs, bi, s, cid)
                thresh = bs[k - 1]


@nb.njit(cache=True, parallel=True)
def merge_cols(scores, row_ids, col_ids, j0, best_s, best_i, n_queries):
    """Offer the scores of columns j0.. to their column documents' top k (columns of other lists)."""
    m, c = scores.shape
    k = best_s.shape[1]
    width = 64  # columns per task: each row is read 256 bytes at a time
    nblk = (c - j0 + width - 1) // width
    for b in nb.prange(nblk):
        ja = j0 + b * width
        jb = min(c, ja + width)
        thresh = np.empty(jb - ja, dtype=np.float32)
        for j in range(ja, jb):
            cid = col_ids[j]
            thresh[j - ja] = best_s[cid, k - 1] if cid < n_queries else np.inf
        for i in range(m):
            rid = row_ids[i]
            for j in range(ja, jb):
                s = scores[i, j]
                if s > thresh[j - ja]:
                    cid = col_ids[j]
                    insert_sorted(best_s[cid], best_i[cid], s, rid)
                    thresh[j - ja] = best_s[cid, k - 1]


def train_lists(emb: np.ndarray, nlist: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spherical k-means centroids (trained on a seeded sample), each document's list and its
    cosine to that list's centroid."""
    import faiss

    n, d = emb.shape
    ntrain = min(n, TRAIN_PER_LIST * nlist)
    rows = np.sort(np.random.default_rng(seed).choice(n, ntrain, replace=False)) if ntrain < n else np.arange(n)
    train = np.ascontiguousarray(emb[rows], dtype=np.float32)
    km = faiss.Kmeans(d, nlist, niter=20, seed=seed, spherical=True, max_points_per_centroid=TRAIN_PER_LIST * 4)
    km.train(train)
    del train
    centroids = km.centroids.copy()
    index = faiss.IndexFlatIP(d)
    index.add(centroids)
    assign = np.empty(n, dtype=np.int64)
    fit = np.empty(n, dtype=np.float32)
    for s in range(0, n, 65_536):
        c, a = index.search(np.ascontiguousarray(emb[s : s + 65_536], dtype=np.float32), 1)
        assign[s : s + 65_536] = a[:, 0]
        fit[s : s + 65_536] = c[:, 0]
    return centroids, assign, fit


def list_partners(centroids: np.ndarray, nprobe: int) -> list[np.ndarray]:
    """For each list L: the lists M >= L to join with it (L first), from the symmetrised probe graph."""
    import faiss

    nlist, d = centroids.shape
    index = faiss.IndexFlatIP(d)
    index.add(centroids)
    _, probe = index.search(centroids, nprobe)
    a = np.repeat(np.arange(nlist), nprobe)
    b = probe.ravel()
    ok = b >= 0
    lo, hi = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
    pairs = np.unique(np.concatenate([np.stack([lo, hi], 1), np.stack([np.arange(nlist)] * 2, 1)]), axis=0)
    starts = np.searchsorted(pairs[:, 0], np.arange(nlist + 1))
    return [pairs[starts[L] : starts[L + 1], 1] for L in range(nlist)]  # sorted, L itself first


def spill_outliers(emb, centroids, assign, fit, order, starts, probes, best_s, best_i, nq) -> int:
    """Score the SPILL_SHARE of query documents farthest from their centroid (all, by default)
    against their own nearest `probes` lists other than their own; return pairs scored."""
    import faiss

    nlist = len(centroids)
    n_spill = int(SPILL_SHARE * nq)
    if n_spill == 0 or probes <= 1 or nlist <= 1:
        return 0
    docs_all = np.sort(np.argsort(fit[:nq], kind="stable")[:n_spill])
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    pairs = 0
    for c0 in range(0, len(docs_all), SPILL_CHUNK):  # bounded memory: (doc, list) pairs of one chunk
        docs = docs_all[c0 : c0 + SPILL_CHUNK]
        _, near = index.search(np.ascontiguousarray(emb[docs], dtype=np.float32), probes)
        doc_of = np.repeat(docs.astype(np.int32), probes)
        lists = near.astype(np.int32).ravel()
        del near
        keep = (lists >= 0) & (lists != assign[doc_of])
        doc_of, lists = doc_of[keep], lists[keep]
        by_list = np.lexsort((doc_of, lists))
        doc_of, lists = doc_of[by_list], lists[by_list]
        del by_list, keep
        bounds = np.searchsorted(lists, np.arange(nlist + 1))
        for L in range(nlist):
            rows = doc_of[bounds[L] : bounds[L + 1]].astype(np.int64)
            cols = order[starts[L] : starts[L + 1]]
            if len(rows) == 0 or len(cols) == 0:
                continue
            y = np.ascontiguousarray(emb[cols], dtype=np.float32)
            for r0 in range(0, len(rows), ROW_BLOCK):
                r_ids = rows[r0 : r0 + ROW_BLOCK]
                merge_rows(np.ascontiguousarray(emb[r_ids], dtype=np.float32) @ y.T, r_ids, cols, best_s, best_i, nq)
            pairs += len(rows) * len(cols)
    return pairs


def ivf_gemm_knn(
    emb: np.ndarray,
    k: int,
    nlist: int | None = None,
    nprobe: int | None = None,
    seed: int = 1234,
    progress: Callable[[int], None] | None = None,
    n_queries: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Top-k neighbours (ids int64 [nq, k], -1 = none; sims float32, decreasing) of the first
    n_queries rows of unit-norm emb, among all rows, excluding each row itself."""
    n, d = emb.shape
    nq = n if n_queries is None else int(n_queries)
    nlist = max(1, min(int(nlist or default_nlist(n)), n))
    nprobe = max(1, min(int(nprobe or default_nprobe(nlist)), nlist))
    centroids, assign, fit = train_lists(emb, nlist, seed)
    order = np.argsort(assign, kind="stable")
    starts = np.searchsorted(assign[order], np.arange(nlist + 1))
    partners = list_partners(centroids, min(nlist, JOIN_PROBE))
    best_s = np.full((nq, k), -np.inf, dtype=np.float32)
    best_i = np.full(best_s.shape, -1, dtype=np.int64)
    pairs = 0
    for L in range(nlist):
        rows = order[starts[L] : starts[L + 1]]
        if len(rows) == 0:
            continue
        own = len(rows)
        cols = np.concatenate([order[starts[M] : starts[M + 1]] for M in partners[L]])
        pairs += own * len(cols)
        col_step = max(COL_BLOCK, own)  # a block always holds the whole own list: row pass sees all of it
        for c0 in range(0, len(cols), col_step):
            c_ids = cols[c0 : c0 + col_step]
            y = np.ascontiguousarray(emb[c_ids], dtype=np.float32)
            for r0 in range(0, own, ROW_BLOCK):
                r_ids = rows[r0 : r0 + ROW_BLOCK]
                x = np.ascontiguousarray(emb[r_ids], dtype=np.float32)
                scores = x @ y.T
                merge_rows(scores, r_ids, c_ids, best_s, best_i, nq)
                merge_cols(scores, r_ids, c_ids, max(0, own - c0), best_s, best_i, nq)
            del y
        if progress is not None:
            done = int(np.count_nonzero(rows < nq))
            if done:
                progress(done)
    spilled = spill_outliers(emb, centroids, assign, fit, order, starts, nprobe, best_s, best_i, nq)
    best_s[best_i < 0] = 0.0
    params = {"nlist": nlist, "nprobe": nprobe, "train": min(n, TRAIN_PER_LIST * nlist), "scanned_fraction": round((2 * pairs + spilled) / max(1, n) / max(1, n), 5)}
    return best_i, best_s, params
