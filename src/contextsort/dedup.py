"""Near-duplicate removal on the kNN graph (the paper's semantic dedup).

Two documents are near-duplicates when their cosine similarity is at least
`threshold` (an edge of the kNN graph), or when their whitespace- and
case-normalised texts hash equal. Near-duplicates form groups (connected
components); the first document of a group in input order is kept, the others
are removed and point to it.
"""

from __future__ import annotations

import numba as nb
import numpy as np

DEFAULT_THRESHOLD = 0.97  # see README "Choosing the dedup threshold" for the measurement


@nb.njit(cache=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@nb.njit(cache=True)
def _union(parent, a, b):
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra == rb:
        return
    # the smaller index becomes the root: the root is the first document in input order
    if ra < rb:
        parent[rb] = ra
    else:
        parent[ra] = rb


@nb.njit(cache=True)
def _dup_components(ids, sims, threshold, hash_order, hashes, valid):
    n, k = ids.shape
    parent = np.arange(n)
    for i in range(n):
        if not valid[i]:
            continue
        for j in range(k):
            t = ids[i, j]
            if t >= 0 and t != i and valid[t] and sims[i, j] >= threshold:
                _union(parent, i, t)
    # exact text duplicates: equal hashes are adjacent in hash_order
    for p in range(1, len(hash_order)):
        a = hash_order[p - 1]
        b = hash_order[p]
        if hashes[a] == hashes[b] and valid[a] and valid[b]:
            _union(parent, a, b)
    dup_of = np.full(n, -1, np.int64)
    for i in range(n):
        r = _find(parent, i)
        if r != i:
            dup_of[i] = r
    return dup_of


def find_duplicates(
    ids: np.ndarray,
    sims: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    text_hash: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """dup_of int64 [N]: -1 for kept documents, else the index of the kept document it duplicates.

    `valid` (bool [N]) excludes documents that must not take part (e.g. rejected).
    A threshold above 1 disables the semantic pass (exact-text hashes still apply,
    unless text_hash is None).
    """
    n = ids.shape[0]
    if valid is None:
        valid = np.ones(n, dtype=np.bool_)
    if text_hash is None:
        hashes = np.arange(n, dtype=np.uint64)
    else:
        hashes = np.asarray(text_hash, dtype=np.uint64)
    order = np.argsort(hashes, kind="stable")
    return _dup_components(
        np.ascontiguousarray(ids, dtype=np.int64),
        np.ascontiguousarray(sims, dtype=np.float32),
        np.float32(threshold),
        order.astype(np.int64),
        hashes,
        np.asarray(valid, dtype=np.bool_),
    )
