"""Better maximum-weight paths than Algorithm 1: greedy edge matching, then local search.

`edge_order`: the classic greedy edge heuristic for travelling-salesman paths. Take the
graph's edges from heaviest to lightest and keep an edge when both ends still have
fewer than two kept edges and it closes no cycle (union-find). The kept edges form
path pieces; a piece ends where no positive kNN edge can extend it. Pieces are then
linked by jumps (weight 0), each jump going to a piece two graph hops away from the
current end when there is one, so consecutive documents across a jump stay related.

`improved_order`: start from the better of `edge_order` and the paper's walk (so it
never does worse than either), then 2-opt and Or-opt moves restricted to kNN candidate
lists, applied only when they raise the path weight.

Edge ordering uses an exact LSD radix sort on the float32 bit pattern (positive floats
sort like their bits), so the whole thing is O(E) and runs in numba.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..graph import Graph


# --------------------------------------------------------------------------- edges
@nb.njit(cache=True)
def _sorted_edges(indptr, indices, weights):
    """Undirected edges (u < v, weight > 0), heaviest first; ties keep (u, row) order."""
    n = len(indptr) - 1
    m = 0
    for i in range(n):
        for e in range(indptr[i], indptr[i + 1]):
            if indices[e] > i and weights[e] > 0:
                m += 1
    u = np.empty(m, np.int64)
    v = np.empty(m, np.int64)
    key = np.empty(m, np.uint32)
    p = 0
    for i in range(n):
        for e in range(indptr[i], indptr[i + 1]):
            j = indices[e]
            if j > i and weights[e] > 0:
                u[p] = i
                v[p] = j
                # descending weight = ascending (max - bits); positive float32 bits are monotone
                key[p] = np.uint32(0xFFFFFFFF) - np.float32(weights[e]).view(np.uint32)
                p += 1
    # two-pass LSD radix sort, 16 bits per pass (stable)
    idx = np.arange(m)
    tmp = np.empty(m, np.int64)
    for shift in (0, 16):
        counts = np.zeros(65537, np.int64)
        for t in range(m):
            counts[((key[idx[t]] >> shift) & 0xFFFF) + 1] += 1
        for b in range(65536):
            counts[b + 1] += counts[b]
        for t in range(m):
            b = (key[idx[t]] >> shift) & 0xFFFF
            tmp[counts[b]] = idx[t]
            counts[b] += 1
        idx, tmp = tmp, idx
    return u[idx], v[idx]


@nb.njit(cache=True)
def _find(parent, x):
    r = x
    while parent[r] != r:
        r = parent[r]
    while parent[x] != r:
        nxt = parent[x]
        parent[x] = r
        x = nxt
    return r


@nb.njit(cache=True)
def _match(n, u, v):
    """Greedy edge matching: partner arrays (-1 = none) of a maximal linear forest."""
    p1 = np.full(n, -1, np.int64)
    p2 = np.full(n, -1, np.int64)
    parent = np.arange(n)
    for t in range(len(u)):
        a = u[t]
        b = v[t]
        if p2[a] >= 0 or p2[b] >= 0:
            continue
        ra = _find(parent, a)
        rb = _find(parent, b)
        if ra == rb:
            continue
        parent[ra] = rb
        if p1[a] < 0:
            p1[a] = b
        else:
            p2[a] = b
        if p1[b] < 0:
            p1[b] = a
        else:
            p2[b] = a
    return p1, p2


@nb.njit(cache=True)
def _link(indptr, indices, weights, p1, p2, by_degree):
    """Walk the path pieces into one order; jump to a piece two hops away when possible."""
    n = len(indptr) - 1
    used = np.zeros(n, np.bool_)
    path = np.empty(n, np.int64)
    p = 0
    cursor = 0
    nxt_start = -1
    while p < n:
        start = nxt_start
        nxt_start = -1
        if start < 0:
            # next piece in the paper's jump order (minimum degree first), entered at an end
            while cursor < n and (used[by_degree[cursor]] or p2[by_degree[cursor]] >= 0):
                cursor += 1
            if cursor < n:
                start = by_degree[cursor]
            else:  # only unused interior nodes remain: impossible for a linear forest
                for i in range(n):
                    if not used[i]:
                        start = i
                        break
        # walk the piece from `start` (an end)
        prev = -1
        cur = start
        while cur >= 0:
            used[cur] = True
            path[p] = cur
            p += 1
            nx = p1[cur] if p1[cur] != prev else p2[cur]
            if nx >= 0 and used[nx]:
                nx = -1
            prev = cur
            cur = nx
        tail = prev
        # two-hop search from the tail for an end of an unused piece
        best = -1.0
        for e in range(indptr[tail], indptr[tail + 1]):
            x = indices[e]
            wx = weights[e]
            if wx <= best:
                break  # rows are sorted by weight: min(wx, .) cannot beat best any more
            for f in range(indptr[x], indptr[x + 1]):
                y = indices[f]
                if used[y] or p2[y] >= 0:
                    continue
                s = min(wx, weights[f])
                if s > best:
                    best = s
                    nxt_start = y
                break  # the first usable end in x's row is its heaviest
    return path


def edge_order(graph: Graph) -> np.ndarray:
    """Greedy edge matching (heaviest edges first, degree <= 2, no cycles), pieces linked by jumps."""
    if graph.n == 0:
        return np.empty(0, dtype=np.int64)
    u, v = _sorted_edges(graph.indptr, graph.indices, graph.weights)
    p1, p2 = _match(graph.n, u, v)
    by_degree = np.argsort(graph.degree, kind="stable").astype(np.int64)
    return _link(graph.indptr, graph.indices, graph.weights, p1, p2, by_degree)


# --------------------------------------------------------------------------- local search
@nb.njit(cache=True)
def _w(indptr, indices, weights, a, b):
    """Graph weight of (a, b); 0 for non-edges and for the dummy node (id n)."""
    n = len(indptr) - 1
    if a >= n or b >= n:
        return 0.0
    for e in range(indptr[a], indptr[a + 1]):
        if indices[e] == b:
            return max(float(weights[e]), 0.0)
    return 0.0


@nb.njit(cache=True)
def _reverse(tour, pos, i, j):
    """Reverse tour positions i..j (cyclic, inclusive), or the complement if that is shorter."""
    m = len(tour)
    length = (j - i) % m + 1
    if 2 * length > m:  # reverse the complement j+1 .. i-1 instead: same cycle, mirrored
        i, j = (j + 1) % m, (i - 1) % m
        length = m - length
    for _ in range(length // 2):
        a = tour[i]
        b = tour[j]
        tour[i] = b
        pos[b] = i
        tour[j] = a
        pos[a] = j
        i = (i + 1) % m
        j = (j - 1) % m
    return length


@nb.njit(cache=True)
def _two_opt_move(tour, pos, a, c):
    """Edges (a, succ a), (c, succ c) -> (a, c), (succ a, succ c): reverse succ(a)..c."""
    m = len(tour)
    return _reverse(tour, pos, (pos[a] + 1) % m, pos[c])


@nb.njit(cache=True)
def _succ(tour, pos, x):
    return tour[(pos[x] + 1) % len(tour)]


@nb.njit(cache=True)
def _pred(tour, pos, x):
    return tour[(pos[x] - 1) % len(tour)]


@nb.njit(cache=True)
def _local_search(indptr, indices, weights, path, max_rounds, max_work, max_span):
    """2-opt and Or-opt (segments of 1-3) with kNN candidates on the path closed by a dummy node.

    First improvement; a node is re-examined only when one of its tour edges changed.
    Stops when no move improves by more than 1e-7, after max_rounds sweeps of the queue,
    or when the reversal work (elements moved) exceeds max_work. Moves between nodes more
    than max_span tour positions apart are not considered, so each move costs O(max_span).
    """
    n = len(indptr) - 1
    m = n + 1
    tour = np.empty(m, np.int64)
    tour[:n] = path
    tour[n] = n  # the dummy closes the path into a cycle; its edges weigh 0
    pos = np.empty(m, np.int64)
    for i in range(m):
        pos[tour[i]] = i
    queue = np.empty(m, np.int64)
    inq = np.zeros(m, np.bool_)
    qh = 0
    qn = 0
    for i in range(n):
        queue[qn] = tour[i]
        inq[tour[i]] = True
        qn += 1
    work = 0
    moves = 0
    eps = 1e-7
    processed = 0
    limit = max_rounds * n
    while qn > 0 and processed < limit and work < max_work:
        a = queue[qh]
        qh = (qh + 1) % m
        qn -= 1
        inq[a] = False
        processed += 1
        improved = False
        # ---- 2-opt, both orientations
        for side in range(2):
            if side == 0:
                b = _succ(tour, pos, a)
            else:
                b = _pred(tour, pos, a)
            wab = _w(indptr, indices, weights, a, b)
            for e in range(indptr[a], indptr[a + 1]):
                c = indices[e]
                wac = float(weights[e])
                if wac <= wab + eps:
                    break
                if c == b:
                    continue
                if side == 0:
                    d = _succ(tour, pos, c)
                else:
                    d = _pred(tour, pos, c)
                if d == a:
                    continue
                span = (pos[c] - pos[a]) % m
                if min(span, m - span) > max_span:
                    continue
                gain = wac + _w(indptr, indices, weights, b, d) - wab - _w(indptr, indices, weights, c, d)
                if gain > eps:
                    if side == 0:
                        work += _two_opt_move(tour, pos, a, c)
                    else:
                        work += _two_opt_move(tour, pos, d, b)
                    for x in (a, b, c, d):
                        if x < n and not inq[x]:
                            queue[(qh + qn) % m] = x
                            qn += 1
                            inq[x] = True
                    improved = True
                    moves += 1
                    break
            if improved:
                break
        if improved:
            continue
        # ---- Or-opt: move the segment starting at a (forward, 1-3 nodes) next to a neighbour
        s1 = a
        s2 = a
        for seg in range(3):
            if seg > 0:
                s2 = _succ(tour, pos, s2)
                if s2 == n or s2 == s1:
                    break
            p = _pred(tour, pos, s1)
            q = _succ(tour, pos, s2)
            if q == p or q == s1:
                break
            removed = _w(indptr, indices, weights, p, s1) + _w(indptr, indices, weights, s2, q)
            joined = _w(indptr, indices, weights, p, q)
            best = eps
            bc = -1
            brev = False
            for end in range(2):
                x = s1 if end == 0 else s2
                for e in range(indptr[x], indptr[x + 1]):
                    c = indices[e]
                    wxc = float(weights[e])
                    if wxc + joined - removed <= best:
                        break
                    # c must lie outside the segment
                    off = (pos[c] - pos[s1]) % m
                    if off <= seg or min(off, m - off) > max_span:
                        continue
                    for sd in range(2):
                        # insert between (c, succ c) or (pred c, c), with x next to c
                        if sd == 0:
                            cc = c
                            dd = _succ(tour, pos, c)
                        else:
                            cc = _pred(tour, pos, c)
                            dd = c
                        offd = (pos[dd] - pos[s1]) % m
                        offc = (pos[cc] - pos[s1]) % m
                        if offd <= seg or offc <= seg:
                            continue
                        if cc == p and dd == q:
                            continue
                        wcd = _w(indptr, indices, weights, cc, dd)
                        # forward: cc s1..s2 dd ; reversed: cc s2..s1 dd
                        gf = joined - removed - wcd + _w(indptr, indices, weights, cc, s1) + _w(indptr, indices, weights, s2, dd)
                        gr = joined - removed - wcd + _w(indptr, indices, weights, cc, s2) + _w(indptr, indices, weights, s1, dd)
                        if gf > best:
                            best = gf
                            bc = cc
                            brev = False
                        if gr > best:
                            best = gr
                            bc = cc
                            brev = True
            if bc >= 0:
                cc = bc
                dd = _succ(tour, pos, cc)
                # three 2-opt moves: (p,s1),(cc,dd) -> (p,cc),(s1,dd); then (p,cc),(q,s2) -> (p,q),(cc,s2)
                work += _two_opt_move(tour, pos, p, cc)
                # now orientation may be mirrored: recompute by identity
                if _succ(tour, pos, p) == cc:
                    work += _two_opt_move(tour, pos, p, q)
                else:
                    work += _two_opt_move(tour, pos, cc, s2)
                # now cc - s2..s1 - dd; fix orientation of the segment if forward is wanted
                if not brev:
                    if _succ(tour, pos, cc) == s2:
                        work += _two_opt_move(tour, pos, cc, s1)
                    else:  # mirrored: dd s1..s2 cc
                        work += _two_opt_move(tour, pos, dd, s2)
                for x in (p, q, s1, s2, cc, dd):
                    if x < n and not inq[x]:
                        queue[(qh + qn) % m] = x
                        qn += 1
                        inq[x] = True
                moves += 1
                improved = True
                break
    # open the cycle at the dummy
    k = pos[n]
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = tour[(k + 1 + i) % m]
    return out, moves, work


def improved_order(graph: Graph, max_rounds: int = 3, max_work: int | None = None, max_span: int = 1000) -> np.ndarray:
    """Greedy edge matching (or the paper's walk, whichever is heavier), then 2-opt / Or-opt."""
    from .paper import paper_order

    if graph.n < 4:
        return edge_order(graph)
    from ..metrics import path_edge_weights

    start = edge_order(graph)
    alt = paper_order(graph)
    if path_edge_weights(graph, alt).sum() > path_edge_weights(graph, start).sum():
        start = alt
    mw = max_work if max_work is not None else 50 * graph.n
    out, _, _ = _local_search(graph.indptr, graph.indices, graph.weights, start, max_rounds, mw, max_span)
    return out
