"""Undirected document graph in CSR form, built from kNN lists.

Edge (a, b) exists if either is in the other's kNN list (the paper's graph);
its weight is their cosine similarity. Neighbours of each node are sorted by
decreasing weight (ties: lower id first) so traversals can scan them in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from .sorting import sort_inplace


@dataclass
class Graph:
    indptr: np.ndarray  # int64 [N+1]
    indices: np.ndarray  # int32 [E2] (node ids; N < 2**31) (each undirected edge twice)
    weights: np.ndarray  # float32 [E2]

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    @property
    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def n_edges(self) -> int:
        return len(self.indices) // 2


@nb.njit(cache=True)
def _symmetrize(ids, sims, n):
    k = ids.shape[1]
    # Collect directed edges both ways, then sort by (src, -w, dst) and dedupe.
    m = 0
    for i in range(ids.shape[0]):
        for j in range(k):
            if ids[i, j] >= 0 and ids[i, j] != i:
                m += 1
    src = np.empty(2 * m, np.int32)  # node ids fit in int32 (N < 2**31): halves the peak
    dst = np.empty(2 * m, np.int32)
    w = np.empty(2 * m, np.float32)
    p = 0
    for i in range(ids.shape[0]):
        for j in range(k):
            t = ids[i, j]
            if t >= 0 and t != i:
                src[p] = i
                dst[p] = t
                w[p] = sims[i, j]
                p += 1
                src[p] = t
                dst[p] = i
                w[p] = sims[i, j]
                p += 1
    # counting sort by src
    counts = np.zeros(n + 1, np.int64)
    for e in range(2 * m):
        counts[src[e] + 1] += 1
    for i in range(n):
        counts[i + 1] += counts[i]
    pos = counts[:-1].copy()
    d2 = np.empty(2 * m, np.int32)
    w2 = np.empty(2 * m, np.float32)
    for e in range(2 * m):
        s = src[e]
        d2[pos[s]] = dst[e]
        w2[pos[s]] = w[e]
        pos[s] += 1
    # per row: sort by dst, dedupe (keep max weight), then sort by -w (ties: lower id). Both are
    # sorts of packed uint64 keys whose order is that total order: a plain in-place sort of
    # one key type (`sorting.sort_inplace`) compiles in a fraction of numba's stable argsort's time
    wk = w2.view(np.uint32)  # the weights' bits, turned in place into order-preserving keys
    for e in range(2 * m):
        if w2[e] == 0.0:
            w2[e] = 0.0  # -0.0 ties with 0.0, as in a comparison of floats
        wk[e] = wk[e] ^ np.uint32(0x80000000) if wk[e] < np.uint32(0x80000000) else ~wk[e]
    max_deg = 0
    for i in range(n):
        max_deg = max(max_deg, counts[i + 1] - counts[i])
    buf = np.empty(max_deg, np.uint64)
    low = np.uint64(0xFFFFFFFF)
    high = np.uint64(32)
    indptr = np.zeros(n + 1, np.int64)
    out_d = np.empty(2 * m, np.int32)
    out_k = np.empty(2 * m, np.uint32)
    q = 0
    for i in range(n):
        a, b = counts[i], counts[i + 1]
        if b > a:
            row = buf[: b - a]
            for e in range(a, b):  # (dst, weight key): equal dst adjacent, the heaviest last
                row[e - a] = (np.uint64(d2[e]) << high) | np.uint64(wk[e])
            sort_inplace(row)
            c = 0
            for t in range(b - a):  # the last of each dst run, re-keyed as (weight descending, dst)
                if t + 1 < b - a and (row[t + 1] >> high) == (row[t] >> high):
                    continue
                row[c] = ((low - (row[t] & low)) << high) | (row[t] >> high)
                c += 1
            seg = row[:c]
            sort_inplace(seg)
            for t in range(c):
                out_d[q] = np.int32(seg[t] & low)
                out_k[q] = np.uint32(low - (seg[t] >> high))
                q += 1
        indptr[i + 1] = q
    for e in range(q):  # keys back to the weights' bits
        out_k[e] = out_k[e] ^ np.uint32(0x80000000) if out_k[e] >= np.uint32(0x80000000) else ~out_k[e]
    out_w = out_k.view(np.float32)
    return indptr, out_d[:q].copy(), out_w[:q].copy()


def graph_from_knn(ids: np.ndarray, sims: np.ndarray) -> Graph:
    """Symmetrise kNN lists into the undirected similarity graph."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    sims = np.ascontiguousarray(sims, dtype=np.float32)
    if ids.ndim != 2 or ids.shape != sims.shape:
        raise ValueError("ids and sims must be 2-d arrays of the same shape")
    indptr, indices, weights = _symmetrize(ids, sims, ids.shape[0])
    return Graph(indptr, indices, weights)


@nb.njit(cache=True)
def _restrict(ids, sims, keep_new, rep):
    n, k = ids.shape
    m = 0
    for i in range(n):
        if keep_new[i] >= 0:
            m += 1
    out_i = np.full((m, k), -1, np.int64)
    out_s = np.zeros((m, k), np.float32)
    for i in range(n):
        r = keep_new[i]
        if r < 0:
            continue
        c = 0
        for j in range(k):
            t = ids[i, j]
            if t < 0:
                continue
            t2 = keep_new[rep[t]]
            if t2 < 0 or t2 == r:
                continue
            dup = False
            for x in range(c):
                if out_i[r, x] == t2:
                    dup = True
                    break
            if not dup:
                out_i[r, c] = t2
                out_s[r, c] = sims[i, j]
                c += 1
    return out_i, out_s


def restrict_knn(
    ids: np.ndarray, sims: np.ndarray, dup_of: np.ndarray, keep: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """kNN lists of the kept documents only, renumbered 0..n_kept-1.

    A neighbour that was removed as a duplicate is replaced by the document it
    duplicates (nearly the same text), so kept documents keep their links.
    `keep` defaults to dup_of < 0; documents outside it that are no duplicate are dropped.
    """
    dup_of = np.asarray(dup_of, dtype=np.int64)
    keep = (dup_of < 0) if keep is None else np.asarray(keep, dtype=bool)
    keep_new = np.full(len(dup_of), -1, dtype=np.int64)
    keep_new[keep] = np.arange(int(keep.sum()))
    rep = np.where(dup_of >= 0, dup_of, np.arange(len(dup_of)))
    return _restrict(np.ascontiguousarray(ids, dtype=np.int64), np.ascontiguousarray(sims, np.float32), keep_new, rep)
