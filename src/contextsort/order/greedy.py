"""Better maximum-weight paths than Algorithm 1: greedy edge matching, then local search.

`edge_order`: the classic greedy edge heuristic for travelling-salesman paths. Take the
graph's edges from heaviest to lightest and keep an edge when both ends still have
fewer than two kept edges and it closes no cycle (union-find). The kept edges form
path pieces; a piece ends where no positive kNN edge can extend it. Pieces are then
linked by jumps (weight 0), each jump going to a piece two graph hops away when there
is one, so consecutive documents across a jump stay related.

`improved_order`: the same pieces, improved by local search restricted to kNN candidate
lists before linking. Because links between pieces are jumps whatever their order, the
path weight is the total weight of the pieces, and the search works on the pieces (a
linear forest) instead of on a position array: no long segment reversals, O(1) "same
piece / which side" tests. Moves, from each piece end a to one of its heaviest graph
neighbours c:
  - c ends another piece: join them (removes a jump);
  - c is inside a piece: cut c from a piece neighbour c1, join a-c, and join c1 to the
    best piece end it can reach without closing a cycle (an Or-opt / 3-opt move that
    removes a jump when the last join exists, a 2-opt move at a piece end when not).
The best gaining move of each end is applied; ends touched are re-examined until none
gains. All of it is O(E) in numba; edges are ordered by one counting-sort pass.
The linked path is then polished by Or-opt (`or_opt`: short segments moved anywhere next
to a heavy neighbour), and the heaviest of that, the greedy start and the paper's walk is
returned, so `improved` (the default order) never weighs less than `paper`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..graph import Graph
from ..metrics import path_edge_weights
from .paper import paper_walk, min_degree_first


@nb.njit(cache=True)
def _find(parent, x):
    """Union-find root of x, compressing the path (the matching's cycle check)."""
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


# --------------------------------------------------------------------------- edges
@nb.njit(cache=True)
def _sorted_edges(indptr, indices, weights):
    """Undirected edges (u < v, weight > 0), heaviest first, by one counting-sort pass.

    Weights are bucketed into up to 2^18 levels (about 2 per edge on small graphs) between
    the smallest and largest positive weight, so edges closer than (max - min) / 2^18
    (about 2e-6 for cosines) count as ties; ties keep (u, row) order. O(E), no comparison sort.
    """
    n = len(indptr) - 1
    m = 0
    wmin = np.inf
    wmax = -np.inf
    for i in range(n):
        for e in range(indptr[i], indptr[i + 1]):
            if indices[e] > i and weights[e] > 0:
                m += 1
                w = weights[e]
                if w < wmin:
                    wmin = w
                if w > wmax:
                    wmax = w
    nb_ = 1 << 18  # fewer buckets for small graphs: the count array is a fixed cost
    while nb_ > 1024 and nb_ > 2 * m:
        nb_ >>= 1
    scale = (nb_ - 1) / (wmax - wmin) if wmax > wmin else 0.0
    counts = np.zeros(nb_ + 1, np.int64)
    for i in range(n):
        for e in range(indptr[i], indptr[i + 1]):
            if indices[e] > i and weights[e] > 0:
                counts[int((wmax - weights[e]) * scale) + 1] += 1
    for b in range(nb_):
        counts[b + 1] += counts[b]
    uv = np.empty(m, np.int64)  # u << 32 | v: one random write per edge instead of two
    for i in range(n):
        for e in range(indptr[i], indptr[i + 1]):
            j = indices[e]
            if j > i and weights[e] > 0:
                b = int((wmax - weights[e]) * scale)
                uv[counts[b]] = (i << 32) | j
                counts[b] += 1
    return uv >> 32, uv & 0xFFFFFFFF


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


def _check_size(graph: Graph) -> None:
    if graph.n >= 1 << 31:  # edges are packed as (u << 32 | v)
        raise ValueError(f"graph of {graph.n} nodes is too large for this order (max 2^31 - 1): partition it")


def edge_order(graph: Graph) -> np.ndarray:
    """Greedy edge matching (heaviest edges first, degree <= 2, no cycles), pieces linked by jumps."""
    if graph.n == 0:
        return np.empty(0, dtype=np.int64)
    _check_size(graph)
    u, v = _sorted_edges(graph.indptr, graph.indices, graph.weights)
    p1, p2 = _match(graph.n, u, v)
    by_degree = min_degree_first(graph)
    return _link(graph.indptr, graph.indices, graph.weights, p1, p2, by_degree)


@nb.njit(cache=True)
def _w(indptr, indices, weights, a, b):
    """Graph weight of (a, b), 0 for non-edges (negative weights count as 0 too)."""
    for e in range(indptr[a], indptr[a + 1]):
        if indices[e] == b:
            return max(float(weights[e]), 0.0)
    return 0.0


# --------------------------------------------------------------------------- forest search
# The greedy matching leaves a linear forest (path pieces). The order of the pieces does
# not change the path weight (every link between pieces is a jump), so improving the
# weight is a search over linear forests: no global position array, no long reversals.
# Each piece keeps contiguous ranks (lo_rank..hi_rank) so "same piece?" and "which side?"
# are O(1); a split or a join relabels only the smaller part.


@nb.njit(cache=True)
def _forest_init(n, p1, p2):
    fid = np.full(n, -1, np.int64)
    rank = np.zeros(n, np.int64)
    cap = 2 * n + 2
    lo_node = np.full(cap, -1, np.int64)
    hi_node = np.full(cap, -1, np.int64)
    lo_rank = np.zeros(cap, np.int64)
    hi_rank = np.zeros(cap, np.int64)
    nf = 0
    for s in range(n):
        if fid[s] >= 0 or p2[s] >= 0:
            continue
        prev = -1
        cur = s
        r = 0
        while cur >= 0:
            fid[cur] = nf
            rank[cur] = r
            r += 1
            nx = p1[cur] if p1[cur] != prev else p2[cur]
            prev = cur
            cur = nx
        lo_node[nf] = s
        hi_node[nf] = prev
        lo_rank[nf] = 0
        hi_rank[nf] = r - 1
        nf += 1
    return fid, rank, lo_node, hi_node, lo_rank, hi_rank, nf


@nb.njit(cache=True)
def _unlink(p1, p2, pw1, pw2, x, y):
    if p1[x] == y:
        p1[x] = p2[x]
        pw1[x] = pw2[x]
        p2[x] = -1
        pw2[x] = 0.0
    elif p2[x] == y:
        p2[x] = -1
        pw2[x] = 0.0


@nb.njit(cache=True)
def _link_pair(p1, p2, pw1, pw2, x, y, w):
    if p1[x] < 0:
        p1[x] = y
        pw1[x] = w
    else:
        p2[x] = y
        pw2[x] = w


@nb.njit(cache=True)
def _relabel(p1, p2, fid, rank, start, g, r0, step):
    """Walk the piece from its end `start`; give it id g and ranks r0, r0+step, ...; return the last node."""
    prev = -1
    cur = start
    r = r0
    last = start
    while cur >= 0:
        fid[cur] = g
        rank[cur] = r
        r += step
        last = cur
        nx = p1[cur] if p1[cur] != prev else p2[cur]
        prev = cur
        cur = nx
    return last


@nb.njit(cache=True)
def _forest_search(indptr, indices, weights, p1, p2, max_work, max_cand):
    """Improve the linear forest by endpoint moves; returns (moves, gain).

    For each piece end a and each graph neighbour c of a:
      - c is an end of another piece: join a-c (gain w(a,c));
      - c is inside a piece: cut c from one of its piece neighbours c1 and join a-c, then
        join c1 to the best end e it can reach without a cycle (gain w(a,c) - w(c,c1) + w(c1,e)).
    The best move of each end is applied if it gains; ends touched are re-examined.
    """
    n = len(indptr) - 1
    pw1 = np.zeros(n, np.float64)
    pw2 = np.zeros(n, np.float64)
    for x in range(n):
        if p1[x] >= 0:
            pw1[x] = _w(indptr, indices, weights, x, p1[x])
        if p2[x] >= 0:
            pw2[x] = _w(indptr, indices, weights, x, p2[x])
    fid, rank, lo_node, hi_node, lo_rank, hi_rank, nf = _forest_init(n, p1, p2)
    deg = np.zeros(n, np.uint8)  # piece degree, a compact copy for the hot end test
    for x in range(n):
        deg[x] = (p1[x] >= 0) + (p2[x] >= 0)
    cap = len(lo_node)
    free = np.empty(cap, np.int64)
    nfree = 0
    for g in range(cap - 1, nf - 1, -1):
        free[nfree] = g
        nfree += 1
    queue = np.empty(n, np.int64)
    inq = np.zeros(n, np.bool_)
    qh = 0
    qn = 0
    for x in range(n):
        if p2[x] < 0:
            queue[qn] = x
            inq[x] = True
            qn += 1
    eps = 1e-7
    work = 0
    moves = 0
    total_gain = 0.0
    wtop = 0.0
    for e in range(len(weights)):
        wtop = max(wtop, float(weights[e]))
    while qn > 0 and work < max_work:
        a = queue[qh]
        qh = (qh + 1) % n
        qn -= 1
        inq[a] = False
        if p2[a] >= 0:
            continue  # no longer an end
        fa = fid[a]
        best = eps
        bc = -1
        bc1 = -1
        be = -1
        for ea in range(indptr[a], min(indptr[a + 1], indptr[a] + max_cand)):
            c = indices[ea]
            w = float(weights[ea])
            work += 1
            if w <= 0.0:
                break
            if w + wtop <= best:
                break  # even the heaviest follow-up could not beat the best move
            if c == p1[a]:
                continue
            fc = fid[c]
            if p2[c] < 0:  # c is an end
                if fc != fa and w > best:
                    best = w
                    bc = c
                    bc1 = -1
                    be = -1
                continue
            for side in range(2):
                c1 = p1[c] if side == 0 else p2[c]
                wc1 = pw1[c] if side == 0 else pw2[c]
                g = w - wc1
                if g + weights[indptr[c1]] <= best:
                    continue  # c1's heaviest edge bounds the follow-up
                if fc == fa:
                    # c1 must lie between a and c, else a-c closes a cycle
                    if (rank[c1] - rank[c]) * (rank[a] - rank[c]) <= 0:
                        continue
                    z = hi_node[fc] if a == lo_node[fc] else lo_node[fc]
                else:
                    z = lo_node[fc] if rank[c1] < rank[c] else hi_node[fc]
                bf = 0.0
                bee = -1
                for ee in range(indptr[c1], indptr[c1 + 1]):
                    e = indices[ee]
                    we = float(weights[ee])
                    work += 1
                    if we <= bf or we <= 0.0:
                        break
                    if e == c1 or e == z or e == c:
                        continue
                    d_e = deg[e]
                    if e == a:
                        d_e += 1
                    if d_e >= 2:
                        continue
                    bf = we
                    bee = e
                    break
                if g + bf > best:
                    best = g + bf
                    bc = c
                    bc1 = c1
                    be = bee
        if bc < 0:
            continue
        c = bc
        # --- apply: optional cut c | c1
        if bc1 >= 0:
            c1 = bc1
            f = fid[c]
            _unlink(p1, p2, pw1, pw2, c, c1)
            _unlink(p1, p2, pw1, pw2, c1, c)
            deg[c] -= 1
            deg[c1] -= 1
            if rank[c1] < rank[c]:
                low_cut = c1
                high_cut = c
            else:
                low_cut = c
                high_cut = c1
            size_low = rank[low_cut] - lo_rank[f] + 1
            size_high = hi_rank[f] - rank[high_cut] + 1
            nfree -= 1
            g2 = free[nfree]
            if size_low <= size_high:
                work += size_low
                _relabel(p1, p2, fid, rank, low_cut, g2, rank[low_cut], -1)
                lo_node[g2] = lo_node[f]
                lo_rank[g2] = lo_rank[f]
                hi_node[g2] = low_cut
                hi_rank[g2] = rank[low_cut]
                lo_node[f] = high_cut
                lo_rank[f] = rank[high_cut]
            else:
                work += size_high
                _relabel(p1, p2, fid, rank, high_cut, g2, rank[high_cut], 1)
                lo_node[g2] = high_cut
                lo_rank[g2] = rank[high_cut]
                hi_node[g2] = hi_node[f]
                hi_rank[g2] = hi_rank[f]
                hi_node[f] = low_cut
                hi_rank[f] = rank[low_cut]
        # --- joins: a-c, then c1-e
        for step in range(2):
            if step == 0:
                x = a
                y = c
            else:
                if bc1 < 0 or be < 0:
                    break
                x = bc1
                y = be
            fx = fid[x]
            fy = fid[y]
            if fx == fy or p2[x] >= 0 or p2[y] >= 0:
                continue  # cannot happen by construction; stay safe
            if hi_rank[fx] - lo_rank[fx] >= hi_rank[fy] - lo_rank[fy]:
                big, small, xb, ys = fx, fy, x, y
            else:
                big, small, xb, ys = fy, fx, y, x
            if xb == hi_node[big]:
                last = _relabel(p1, p2, fid, rank, ys, big, hi_rank[big] + 1, 1)
                work += abs(rank[last] - hi_rank[big])
                hi_rank[big] = rank[last]
                hi_node[big] = last
            else:
                last = _relabel(p1, p2, fid, rank, ys, big, lo_rank[big] - 1, -1)
                work += abs(lo_rank[big] - rank[last])
                lo_rank[big] = rank[last]
                lo_node[big] = last
            free[nfree] = small
            nfree += 1
            wxy = _w(indptr, indices, weights, x, y)
            _link_pair(p1, p2, pw1, pw2, x, y, wxy)
            _link_pair(p1, p2, pw1, pw2, y, x, wxy)
            deg[x] += 1
            deg[y] += 1
        moves += 1
        total_gain += best
        for x in (a, bc1, be, c):
            if x >= 0 and p2[x] < 0 and not inq[x]:
                queue[(qh + qn) % n] = x
                qn += 1
                inq[x] = True
    return moves, total_gain, work


@nb.njit(cache=True)
def _wt(indptr, indices, weights, a, b):
    """Exact graph weight of (a, b) as path_weight counts it: 0 for non-edges and path ends."""
    if a < 0 or b < 0:
        return 0.0
    for e in range(indptr[a], indptr[a + 1]):
        if indices[e] == b:
            return float(weights[e])
    return 0.0


@nb.njit(cache=True)
def _or_opt(indptr, indices, weights, path, max_seg, max_cand, max_work):
    """Or-opt on the whole path (jumps included), as a doubly linked list: move a segment of
    1..max_seg consecutive documents, either way round, next to one of the heaviest graph
    neighbours of one of its ends, anywhere in the path. A move is applied when it raises
    the exact path weight (negative edges count), so the result never weighs less.
    Segments are short, so no long reversal is ever needed: O(1) list surgery per move.
    Returns (new path, moves, gain)."""
    n = len(path)
    nxt = np.full(n, -1, np.int64)
    prv = np.full(n, -1, np.int64)
    for q in range(n - 1):
        nxt[path[q]] = path[q + 1]
        prv[path[q + 1]] = path[q]
    head = path[0]
    queue = np.empty(n, np.int64)
    inq = np.ones(n, np.bool_)
    for q in range(n):
        queue[q] = path[q]
    qh = 0
    qn = n
    seg = np.empty(max_seg, np.int64)
    eps = 1e-7
    work = 0
    moves = 0
    total = 0.0
    while qn > 0 and work < max_work:
        s = queue[qh]
        qh = (qh + 1) % n
        qn -= 1
        inq[s] = False
        best = eps
        b_first = -1
        b_last = -1
        b_x = -1
        b_y = -1
        b_rev = False
        for direction in range(2):
            e = s
            for L in range(1, max_seg + 1):
                if L > 1:
                    e = nxt[e] if direction == 0 else prv[e]
                    if e < 0:
                        break
                elif direction == 1:
                    continue  # the single-node segment is tried once
                first = s if direction == 0 else e
                last = e if direction == 0 else s
                p = prv[first]
                q = nxt[last]
                loss = _wt(indptr, indices, weights, p, first) + _wt(indptr, indices, weights, last, q) \
                    - _wt(indptr, indices, weights, p, q)
                for end in range(2):  # the segment end that goes next to its neighbour a
                    u = first if end == 0 else last
                    t = last if end == 0 else first
                    if L == 1 and end == 1:
                        break
                    for ea in range(indptr[u], min(indptr[u + 1], indptr[u] + max_cand)):
                        a = indices[ea]
                        wa = float(weights[ea])
                        work += 1
                        if wa <= 0.0 or wa - loss <= best:
                            break  # rows are sorted by weight
                        inside = False
                        c = first
                        for _ in range(L):
                            if c == a:
                                inside = True
                            c = nxt[c]
                        if inside:
                            continue
                        for side in range(2):
                            if side == 0:  # x - t..u - a
                                x = prv[a]
                                y = a
                            else:  # a - u..t - y
                                x = a
                                y = nxt[a]
                            if x == last or y == first:
                                continue  # x or y inside the segment
                            if side == 0:
                                g = _wt(indptr, indices, weights, x, t) + wa
                            else:
                                g = wa + _wt(indptr, indices, weights, t, y)
                            g -= _wt(indptr, indices, weights, x, y) + loss
                            work += 1
                            if g > best:
                                best = g
                                b_first = first
                                b_last = last
                                b_x = x
                                b_y = y
                                # the segment runs x -> y from t to u (side 0) or u to t (side 1);
                                # reversed when that is last -> first
                                b_rev = (side == 0 and u == first) or (side == 1 and u == last)
        if b_first < 0:
            continue
        # collect the segment in path order, unlink it, relink it between x and y
        L = 0
        c = b_first
        while True:
            seg[L] = c
            L += 1
            if c == b_last:
                break
            c = nxt[c]
        p = prv[b_first]
        q = nxt[b_last]
        if p >= 0:
            nxt[p] = q
        else:
            head = q
        if q >= 0:
            prv[q] = p
        prev = b_x
        for i in range(L):
            u = seg[L - 1 - i] if b_rev else seg[i]
            prv[u] = prev
            if prev >= 0:
                nxt[prev] = u
            else:
                head = u
            prev = u
        nxt[prev] = b_y
        if b_y >= 0:
            prv[b_y] = prev
        moves += 1
        total += best
        for i in range(L + 4):
            v = seg[i] if i < L else (p, q, b_x, b_y)[i - L]
            if v >= 0 and not inq[v]:
                queue[(qh + qn) % n] = v
                qn += 1
                inq[v] = True
    out = np.empty(n, np.int64)
    c = head
    for q in range(n):
        out[q] = c
        c = nxt[c]
    return out, moves, total


def or_opt(graph: Graph, path: np.ndarray, segment: int = 3, candidates: int = 3,
           max_work: int | None = None) -> tuple[np.ndarray, int, float]:
    """Or-opt moves on any order of the graph's nodes: (new order, moves, weight gained).

    Segments of up to `segment` consecutive documents are moved next to one of the
    `candidates` heaviest neighbours of a segment end; every move raises the exact path
    weight. `max_work` caps the candidates examined (default 200 N).
    """
    path = np.ascontiguousarray(path, dtype=np.int64)
    if graph.n == 0:
        return path, 0, 0.0
    mw = max_work if max_work is not None else 200 * graph.n
    out, moves, gain = _or_opt(graph.indptr, graph.indices, graph.weights, path, segment, candidates, mw)
    return out, int(moves), float(gain)


IMPROVED_CANDIDATES = 3  # graph neighbours of each piece end tried as partners
OR_OPT_SEGMENT = 3  # longest segment an Or-opt move relocates (0: no Or-opt pass)


def improved_order(
    graph: Graph, candidates: int = IMPROVED_CANDIDATES, start: str = "edge", max_work: int | None = None,
    or_opt_segment: int = OR_OPT_SEGMENT,
) -> np.ndarray:
    """Path pieces from a greedy start, improved by endpoint moves on kNN candidates, linked,
    then polished by Or-opt moves on the whole path.

    start="edge": greedy edge matching (best quality); start="paper": the pieces of
    Algorithm 1's walk (cheaper: no edge sort). Every move raises the weight; the result is
    compared with the paper's walk and with the greedy order it started from and never
    weighs less than either. `candidates` caps the neighbours tried per piece end and per
    segment end (the heaviest ones); `max_work` caps the edges scanned plus nodes relabelled
    of each search (default 200 N) so the time stays linear; `or_opt_segment` is the longest
    segment an Or-opt move relocates (0 turns the Or-opt pass off).
    """
    if graph.n == 0:
        return np.empty(0, dtype=np.int64)
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1 (got {candidates})")
    if or_opt_segment < 0:
        raise ValueError(f"or_opt_segment must be >= 0 (got {or_opt_segment})")
    by_degree = min_degree_first(graph)
    _check_size(graph)
    paper = paper_walk(graph.indptr, graph.indices, by_degree)  # = paper_order
    if start == "edge":
        u, v = _sorted_edges(graph.indptr, graph.indices, graph.weights)
        p1, p2 = _match(graph.n, u, v)
        greedy = _link(graph.indptr, graph.indices, graph.weights, p1, p2, by_degree)  # = edge_order
    elif start == "paper":
        greedy = paper
        p1, p2 = _path_pieces(graph.indptr, graph.indices, greedy)
    else:
        raise ValueError(f"unknown start '{start}' (edge, paper)")
    mw = max_work if max_work is not None else 200 * graph.n
    _forest_search(graph.indptr, graph.indices, graph.weights, p1, p2, mw, candidates)
    improved = _link(graph.indptr, graph.indices, graph.weights, p1, p2, by_degree)
    if or_opt_segment > 0:
        improved, _, _ = or_opt(graph, improved, or_opt_segment, candidates, mw)
    # A jump between pieces can land on an edge by chance (adding its weight, which may be
    # negative), so compare the linked orders themselves and keep the heaviest.
    best, best_w = improved, path_edge_weights(graph, improved).sum()
    for other in (greedy, paper):
        w = path_edge_weights(graph, other).sum()
        if w > best_w:
            best, best_w = other, w
    return best

@nb.njit(cache=True)
def _path_pieces(indptr, indices, path):
    """Partner arrays of Algorithm 1's walk: consecutive nodes that are graph neighbours.

    A jump never lands on a neighbour (it happens only when every neighbour is
    visited), so the adjacent pairs of the path are exactly the walk's moves.
    """
    n = len(indptr) - 1
    p1 = np.full(n, -1, np.int64)
    p2 = np.full(n, -1, np.int64)
    for q in range(len(path) - 1):
        cur = path[q]
        nxt = path[q + 1]
        adjacent = False
        for e in range(indptr[cur], indptr[cur + 1]):
            if indices[e] == nxt:
                adjacent = True
                break
        if adjacent:
            if p1[cur] < 0:
                p1[cur] = nxt
            else:
                p2[cur] = nxt
            p1[nxt] = cur
    return p1, p2
