"""Near-duplicate removal on the kNN graph (the paper's semantic dedup), without chaining.

Documents are walked in input order, as in SemDeDup: a document is kept unless it
is at least `threshold` similar (an edge of the kNN graph, in either document's
list) to an already kept document, in which case it is removed and names the most
similar such kept document. Exact copies (equal whitespace- and case-normalised text
hashes) name the first kept copy. So every removed document is within the threshold
of the kept document it names (or is an exact copy of it, or of a document that is):
removals never chain through a series of documents that drift away from the original.
"""

from __future__ import annotations

import numba as nb
import numpy as np

DEFAULT_THRESHOLD = 0.97  # see README "Choosing the dedup threshold" for the measurement


@nb.njit(cache=True)
def _similar_edges(ids, sims, threshold, valid):
    """CSR (indptr, nbr, w) of the undirected edges at or above the threshold between valid documents."""
    n, k = ids.shape
    deg = np.zeros(n + 1, np.int64)
    for i in range(n):
        if not valid[i]:
            continue
        for j in range(k):
            t = ids[i, j]
            if t >= 0 and t != i and t < n and valid[t] and sims[i, j] >= threshold:
                deg[i + 1] += 1
                deg[t + 1] += 1
    for i in range(n):
        deg[i + 1] += deg[i]
    fill = deg[:-1].copy()
    nbr = np.empty(deg[n], np.int64)
    w = np.empty(deg[n], np.float32)
    for i in range(n):
        if not valid[i]:
            continue
        for j in range(k):
            t = ids[i, j]
            if t >= 0 and t != i and t < n and valid[t] and sims[i, j] >= threshold:
                nbr[fill[i]] = t
                w[fill[i]] = sims[i, j]
                fill[i] += 1
                nbr[fill[t]] = i
                w[fill[t]] = sims[i, j]
                fill[t] += 1
    return deg, nbr, w


@nb.njit(cache=True)
def _keep_in_order(indptr, nbr, w, first_copy, valid):
    """The SemDeDup walk: dup_of[i] = kept document i duplicates, -1 when kept."""
    n = len(indptr) - 1
    dup_of = np.full(n, -1, np.int64)
    kept = np.zeros(n, np.bool_)
    for i in range(n):
        if not valid[i]:
            continue
        r = first_copy[i]
        if r != i:  # an exact copy of an earlier document: name that one, or what it names
            dup_of[i] = r if kept[r] else dup_of[r]
            continue
        best = -1
        best_w = np.float32(0.0)
        for e in range(indptr[i], indptr[i + 1]):
            t = nbr[e]
            if t < i and kept[t] and (best < 0 or w[e] > best_w or (w[e] == best_w and t < best)):
                best = t
                best_w = w[e]
        if best >= 0:
            dup_of[i] = best
        else:
            kept[i] = True
    return dup_of


def first_copies(text_hash: np.ndarray | None, valid: np.ndarray) -> np.ndarray:
    """int64 [N]: the first valid document (in input order) with the same text hash; itself when none."""
    n = len(valid)
    first = np.arange(n, dtype=np.int64)
    if text_hash is None or n == 0:
        return first
    hashes = np.asarray(text_hash, dtype=np.uint64)
    cand = np.flatnonzero(valid)
    order = cand[np.argsort(hashes[cand], kind="stable")]  # equal hashes adjacent, in input order
    hs = hashes[order]
    starts = np.r_[True, hs[1:] != hs[:-1]] if len(order) else np.empty(0, bool)
    group_first = order[np.flatnonzero(starts)]
    first[order] = group_first[np.cumsum(starts) - 1]
    return first


def find_duplicates(
    ids: np.ndarray,
    sims: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    text_hash: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """dup_of int64 [N]: -1 for kept documents, else the index of the kept document it duplicates.

    `ids`/`sims` are the kNN lists ([N, k], -1 = no neighbour). A removed document is at
    least `threshold` similar to the document it names, or an exact copy (equal
    text_hash) of it or of a removed document that is; the named document is always kept
    and comes earlier in input order. `valid` (bool [N]) excludes documents that must
    not take part (e.g. rejected). A threshold above 1 disables the semantic pass
    (exact-text hashes still apply, unless text_hash is None).
    """
    n = ids.shape[0]
    valid = np.ones(n, dtype=np.bool_) if valid is None else np.asarray(valid, dtype=np.bool_)
    indptr, nbr, w = _similar_edges(
        np.ascontiguousarray(ids, dtype=np.int64), np.ascontiguousarray(sims, dtype=np.float32), np.float32(threshold), valid
    )
    return _keep_in_order(indptr, nbr, w, first_copies(text_hash, valid), valid)
