"""The public ICLM release's ordering (sort/sort.py of swj0419/in-context-pretraining).

It differs from the paper's Algorithm 1 in four ways, reproduced here so its output can
be compared with the paper's and ours:

1. Start nodes are arbitrary: the release pops from a Python ``set(range(N))``, which for
   small ints hands out the lowest remaining id, so we take the lowest unvisited index.
2. The next document is the FIRST unseen one among the document's own top-9 retrieved
   neighbours (``knn[1:10]``, position 0 being the document itself), not the heaviest
   unseen edge of the symmetric graph. If none is unseen, it jumps to a new start.
3. Segments are capped: after 21 documents the walk jumps even if a neighbour is free.
   (The release counts the very first document of the run as 0, so its first segment
   can hold 22; we reproduce that too.)
4. Segments shorter than 21 are dissolved afterwards, in segment order: each of their
   documents is inserted just before the first of its top-9 neighbours that lies in
   another segment. The release crashes when all nine lie in the same segment; we keep
   such a document where it is (its segment survives, shortened).

The release also drops documents at write time (character 3-gram Jaccard > 0.85 on the
first 100 characters of consecutive documents); that is deduplication, not ordering,
and is not reproduced: this order is a permutation, like every order but ``knn``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..graph import Graph

RELEASE_TOP = 9  # knn[1:10]
RELEASE_SEGMENT = 21  # sort_class.cluster_size


@nb.njit(cache=True)
def _release_walk(ids, top, cap):
    n = ids.shape[0]
    kk = min(top, ids.shape[1])
    seen = np.zeros(n, np.bool_)
    path = np.empty(n, np.int64)
    seg_of = np.empty(n, np.int64)
    cursor = 0
    cur = 0
    seen[0] = True
    path[0] = 0
    seg_of[0] = 0
    p = 1
    seg = 0
    seg_len = 0  # the release does not count its first document
    while p < n:
        nxt = -1
        for j in range(kk):
            t = ids[cur, j]
            if t >= 0 and not seen[t]:
                nxt = t
                break
        if nxt < 0 or seg_len >= cap:
            while seen[cursor]:
                cursor += 1
            nxt = cursor
            seg += 1
            seg_len = 0
        cur = nxt
        seen[cur] = True
        path[p] = cur
        seg_of[cur] = seg
        seg_len += 1
        p += 1
    return path, seg_of, seg + 1


@nb.njit(cache=True)
def _release_merge(ids, top, cap, path, seg_of, n_seg):
    """Dissolve short segments into their neighbours' segments (doubly linked lists)."""
    n = ids.shape[0]
    kk = min(top, ids.shape[1])
    nxt = np.full(n, -1, np.int64)
    prv = np.full(n, -1, np.int64)
    head = np.full(n_seg, -1, np.int64)
    length = np.zeros(n_seg, np.int64)
    for p in range(n):
        d = path[p]
        s = seg_of[d]
        length[s] += 1
        if p > 0 and seg_of[path[p - 1]] == s:
            prv[d] = path[p - 1]
            nxt[path[p - 1]] = d
        else:
            head[s] = d
    members = np.empty(n, np.int64)
    for s in range(n_seg):
        if length[s] >= cap or head[s] < 0:
            continue
        # snapshot the segment's documents in order (the release iterates its list)
        cnt = 0
        d = head[s]
        while d >= 0:
            members[cnt] = d
            cnt += 1
            d = nxt[d]
        head[s] = -1
        length[s] = 0
        last = -1
        for i in range(cnt):
            d = members[i]
            target = -1
            for j in range(kk):
                t = ids[d, j]
                if t >= 0 and seg_of[t] != s:
                    target = t
                    break
            if target < 0:  # the release would crash here; the document stays in s
                prv[d] = last
                nxt[d] = -1
                if last >= 0:
                    nxt[last] = d
                else:
                    head[s] = d
                last = d
                length[s] += 1
                continue
            ts = seg_of[target]
            # insert d just before target
            before = prv[target]
            prv[d] = before
            nxt[d] = target
            prv[target] = d
            if before >= 0:
                nxt[before] = d
            else:
                head[ts] = d
            seg_of[d] = ts
            length[ts] += 1
    out = np.empty(n, np.int64)
    p = 0
    for s in range(n_seg):
        d = head[s]
        while d >= 0:
            out[p] = d
            p += 1
            d = nxt[d]
    return out, seg_of


def release_order(graph: Graph, knn_ids: np.ndarray | None = None, top: int = RELEASE_TOP, segment: int = RELEASE_SEGMENT) -> np.ndarray:
    """The public release's order: first unseen of the top-9, 21-document segments, short ones merged.

    `knn_ids` are each document's own retrieved neighbours (int [N, k], -1 = none, best
    first, self excluded), as the release uses them; without them each node's heaviest
    graph edges stand in.
    """
    out, _ = release_segments(graph, knn_ids, top, segment)
    return out


def release_segments(graph: Graph, knn_ids=None, top: int = RELEASE_TOP, segment: int = RELEASE_SEGMENT):
    """`release_order` plus each document's final segment id (for tests and reports)."""
    n = graph.n
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    ids = graph_top(graph, top) if knn_ids is None else np.ascontiguousarray(knn_ids, dtype=np.int64)
    if ids.shape[0] != n:
        raise ValueError(f"knn_ids has {ids.shape[0]} rows for a graph of {n} nodes")
    path, seg_of, n_seg = _release_walk(ids, top, segment)
    return _release_merge(ids, top, segment, path, seg_of.copy(), n_seg)


def graph_top(graph: Graph, top: int) -> np.ndarray:
    ids = np.full((graph.n, top), -1, np.int64)
    deg = np.minimum(graph.degree, top)
    for j in range(top):
        rows = np.flatnonzero(deg > j)
        ids[rows, j] = graph.indices[graph.indptr[rows] + j]
    return ids
