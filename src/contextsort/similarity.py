"""Which documents are related: dense, lexical (TF-IDF / BM25) and hybrid kNN graphs.

Dense embeddings capture topic; sparse lexical vectors capture shared rare terms (what
cross-referencing documents have in common). Every signal ends in the same arrays the
rest of the pipeline uses, ids int64 [N, k] (-1 = none) and sims float32 [N, k] sorted by
decreasing similarity, so dedup, traversal and metrics do not change.

- lexical: hashed term counts (no vocabulary held in memory) weighted by TF-IDF
  (sublinear tf) or BM25, rows L2-normalised, similarity = cosine. kNN is exact for
  small N (blocked sparse products, one block of rows at a time, never N x N) and
  approximate above `LEXICAL_EXACT_MAX_N`: candidates from the products of pruned rows
  (each document's heaviest terms, very common terms dropped), rescored exactly on the
  full sparse vectors. (A sparse random projection to 256-512 dims + FAISS was tried
  first: recall@10 only 0.34-0.56 on the BBC sample, so it was dropped.)
- hybrid: the kNN lists of both signals are merged per document, every candidate is
  rescored with both signals, and each signal is put on a common scale (0 = a random
  pair, 1 = a typical nearest neighbour) before the weighted sum. Each signal's top
  neighbour is always kept, so neither signal's strongest link is lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numba as nb
import numpy as np

SIMILARITIES = ("dense", "lexical", "hybrid")
WEIGHTINGS = ("tfidf", "bm25")
N_FEATURES = 1 << 20  # hashed vocabulary; collisions are rare at this size
LEXICAL_EXACT_MAX_N = 10_000  # exact blocked lexical kNN up to here (20k synthetic docs: exact 45 s, pruned 20 s, recall 0.998; benchmarks/similarity.py --scale)
BLOCK_CELLS = 1 << 24  # rows x N cells of one similarity block (64 MiB as dense float32)
DENSE_FRACTION = 0.1  # a block product denser than this is searched as a dense array


DEFAULT_HYBRID_WEIGHT = 0.2  # dense share of the hybrid (README "Similarity signals"; 0.5 did not hold up, docs/quality.md)


class SimilarityUnavailable(Exception):
    """The lexical signal needs scikit-learn and scipy (core dependencies, checked at use)."""


def _sklearn():
    try:
        import scipy.sparse  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as e:
        raise SimilarityUnavailable(
            "lexical and hybrid similarity need scikit-learn and scipy (core dependencies of contextsort): pip install scikit-learn scipy"
        ) from e


@dataclass
class SimilarityInfo:
    """How the graph was built (goes to the manifest)."""

    similarity: str
    k: int
    params: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Sparse lexical vectors
# ---------------------------------------------------------------------------


def _hasher(stop_words: str | None = "english"):
    from sklearn.feature_extraction.text import HashingVectorizer

    # alternate_sign=False: counts stay counts; norm=None: weighting is ours.
    return HashingVectorizer(
        n_features=N_FEATURES, alternate_sign=False, norm=None, stop_words=stop_words, dtype=np.float32
    )


def term_counts(texts: Iterable[str], batch: int = 4096, stop_words: str | None = "english"):
    """Hashed term counts, CSR float32 [n, N_FEATURES], built batch by batch (stateless hasher)."""
    _sklearn()
    import scipy.sparse as sp

    hv = _hasher(stop_words)
    parts, buf = [], []
    for t in texts:
        buf.append(t)
        if len(buf) >= batch:
            parts.append(hv.transform(buf))
            buf = []
    if buf or not parts:
        parts.append(hv.transform(buf))
    x = sp.vstack(parts, format="csr") if len(parts) > 1 else parts[0].tocsr()
    x.sum_duplicates()
    x.sort_indices()
    return x


@dataclass
class LexicalModel:
    """Corpus statistics for weighting: document frequencies and mean document length."""

    weighting: str
    n_docs: int
    df: np.ndarray  # int64 [N_FEATURES]
    avg_len: float
    k1: float = 1.2
    b: float = 0.75

    @classmethod
    def fit(cls, counts, weighting: str = "tfidf") -> "LexicalModel":
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown lexical weighting '{weighting}' ({', '.join(WEIGHTINGS)})")
        df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.int64)
        lens = np.asarray(counts.sum(axis=1)).ravel()
        return cls(weighting, counts.shape[0], df, float(lens.mean()) if len(lens) else 0.0)

    def idf(self) -> np.ndarray:
        n, df = self.n_docs, self.df.astype(np.float64)
        if self.weighting == "bm25":
            return np.log1p((n - df + 0.5) / (df + 0.5))
        return np.log((1.0 + n) / (1.0 + df)) + 1.0  # smooth idf, as scikit-learn

    def transform(self, counts):
        """Weighted, L2-normalised rows (cosine = dot). All-zero rows stay zero."""
        x = counts.astype(np.float32, copy=True)
        tf = x.data
        if self.weighting == "bm25":
            lens = np.asarray(counts.sum(axis=1)).ravel()
            norm = self.k1 * (1.0 - self.b + self.b * lens / max(self.avg_len, 1e-9))
            row_norm = np.repeat(norm, np.diff(x.indptr)).astype(np.float32)
            tf[:] = tf * (self.k1 + 1.0) / (tf + row_norm)
        else:
            tf[:] = 1.0 + np.log(tf)
        tf *= self.idf().astype(np.float32)[x.indices]
        _normalize_rows(x.indptr, x.data)
        return x


@nb.njit(cache=True)
def _normalize_rows(indptr, data):
    for i in range(len(indptr) - 1):
        s = 0.0
        for e in range(indptr[i], indptr[i + 1]):
            s += float(data[e]) * float(data[e])
        if s > 0:
            inv = 1.0 / math.sqrt(s)
            for e in range(indptr[i], indptr[i + 1]):
                data[e] *= inv


def lexical_vectors(texts: Iterable[str], weighting: str = "tfidf", stop_words: str | None = "english"):
    """Unit-norm sparse TF-IDF or BM25 vectors, CSR float32 [n, N_FEATURES]."""
    counts = term_counts(texts, stop_words=stop_words)
    return LexicalModel.fit(counts, weighting).transform(counts)


def prune_rows(x, top_terms: int = 64, max_df: int = 1000):
    """Each row's `top_terms` heaviest terms, without terms in more than `max_df` documents.

    The heaviest TF-IDF / BM25 terms of a document are its rare, repeated ones: what
    related documents share. Products of pruned rows cost far less than full ones and
    still find most true neighbours (recall measured in benchmarks/similarity.py).
    """
    df = np.bincount(x.indices, minlength=x.shape[1])
    y = x.copy()
    y.data[df[y.indices] > max_df] = 0.0
    _keep_top(y.indptr, y.data, top_terms)
    y.eliminate_zeros()
    return y


@nb.njit(cache=True)
def _keep_top(indptr, data, m):
    for i in range(len(indptr) - 1):
        a, b = indptr[i], indptr[i + 1]
        if b - a <= m:
            continue
        row = data[a:b].copy()
        row.sort()
        thr = row[b - a - m]
        kept = 0
        for e in range(b - 1, a - 1, -1):  # ties at the threshold: keep the later columns first, deterministic
            if data[e] > thr:
                kept += 1
        room = m - kept
        for e in range(a, b):
            if data[e] < thr:
                data[e] = 0.0
            elif data[e] == thr:
                if room > 0:
                    room -= 1
                else:
                    data[e] = 0.0


# ---------------------------------------------------------------------------
# Lexical kNN
# ---------------------------------------------------------------------------


def _topk_dense_block(block: np.ndarray, rows: np.ndarray, k: int, out_i: np.ndarray, out_s: np.ndarray) -> None:
    """Top-k columns of each row of a dense similarity block, self excluded, ties by lower id."""
    b, n = block.shape
    block = block.astype(np.float32, copy=False)
    block[np.arange(b), rows] = -np.inf
    kk = min(k, n - 1)
    part = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
    vals = np.take_along_axis(block, part, axis=1)
    # ties at the k-th value could be cut arbitrarily by argpartition: widen to all tied columns
    kth = vals.min(axis=1)
    for r in np.flatnonzero((block == kth[:, None]).sum(axis=1) > (vals == kth[:, None]).sum(axis=1)):
        cand = np.flatnonzero(block[r] >= kth[r])
        order = np.lexsort((cand, -block[r, cand]))[:kk]
        part[r] = cand[order]
        vals[r] = block[r, part[r]]
    order = np.argsort(part, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")  # decreasing similarity, then increasing id
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    ok = vals > 0  # no shared term: not a neighbour
    out_i[:, :kk] = np.where(ok, part, -1)
    out_s[:, :kk] = np.where(ok, vals, 0.0)


@nb.njit(cache=True)
def _topk_csr(indptr, indices, data, row0, out_i, out_s):
    """Top-k columns of each row of a sparse similarity block (row r is document row0 + r).

    Self and non-positive entries are skipped; order: decreasing similarity, then
    increasing id, so results do not depend on the sparse product's column order.
    """
    k = out_i.shape[1]
    for r in range(len(indptr) - 1):
        a, b = indptr[r], indptr[r + 1]
        me = row0 + r
        m = 0
        cols = np.empty(b - a, np.int64)
        vals = np.empty(b - a, np.float64)
        for e in range(a, b):
            if indices[e] != me and data[e] > 0:
                cols[m] = indices[e]
                vals[m] = data[e]
                m += 1
        cols = cols[:m]
        vals = vals[:m]
        if m > k:
            # keep only entries >= the k-th largest value (ties included), O(m)
            thr = np.partition(vals, m - k)[m - k]
            keep = vals >= thr
            cols = cols[keep]
            vals = vals[keep]
            m = len(cols)
        # sort by (-value, id): ids first (stable), then values (stable)
        o1 = np.argsort(cols, kind="mergesort")
        cols = cols[o1]
        vals = vals[o1]
        o2 = np.argsort(-vals, kind="mergesort")
        take = min(k, m)
        for t in range(take):
            out_i[r, t] = cols[o2[t]]
            out_s[r, t] = vals[o2[t]]


def lexical_knn_exact(x, k: int, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine neighbours of unit-norm sparse rows, one block of rows at a time.

    Each block's product stays sparse (documents sharing no term never meet), with at
    most BLOCK_CELLS cells, never N x N. Pairs sharing no term are not neighbours (id -1).
    """
    n = x.shape[0]
    k_eff = max(0, min(k, n - 1))
    ids = np.full((n, k_eff), -1, dtype=np.int64)
    sims = np.zeros((n, k_eff), dtype=np.float32)
    if k_eff == 0:
        return ids, sims
    xt = x.T.tocsr()
    step = max(1, min(n, BLOCK_CELLS // max(n, 1)))
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = (x[start:stop] @ xt).tocsr()
        if block.nnz > DENSE_FRACTION * block.shape[0] * n:  # nearly dense: a dense block and argpartition are faster
            _topk_dense_block(block.toarray(), np.arange(start, stop), k_eff, ids[start:stop], sims[start:stop])
        else:
            _topk_csr(block.indptr.astype(np.int64), block.indices.astype(np.int64), block.data, start, ids[start:stop], sims[start:stop])
        if progress is not None:
            progress(stop - start)
    return ids, sims


def lexical_knn(
    x,
    k: int,
    method: str = "auto",
    candidates: int | None = None,
    top_terms: int = 64,
    max_df: int = 1000,
    progress=None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Top-k lexical neighbours: exact (blocked products) or pruned (candidates from each
    document's heaviest terms, then exact rescoring on the full vectors)."""
    n = x.shape[0]
    if method == "auto":
        method = "exact" if n <= LEXICAL_EXACT_MAX_N else "pruned"
    if method == "exact":
        ids, sims = lexical_knn_exact(x, k, progress=progress)
        return ids, sims, {"method": "exact"}
    if method != "pruned":
        raise ValueError(f"unknown lexical kNN method '{method}' (auto, exact, pruned)")
    kc = candidates or 4 * k
    xp = prune_rows(x, top_terms, max_df)
    cand, _ = lexical_knn_exact(xp, kc, progress=progress)
    ids, sims = rescore(cand, k, lexical=x)
    return ids, sims, {"method": "pruned", "top_terms": top_terms, "max_df": max_df, "candidates": int(cand.shape[1])}


# ---------------------------------------------------------------------------
# Rescoring candidates (numba)
# ---------------------------------------------------------------------------


@nb.njit(cache=True)
def _sparse_dot(indptr, indices, data, a, b):
    """Dot product of sparse rows a and b (sorted column indices)."""
    i, ie = indptr[a], indptr[a + 1]
    j, je = indptr[b], indptr[b + 1]
    s = 0.0
    while i < ie and j < je:
        ci = indices[i]
        cj = indices[j]
        if ci == cj:
            s += float(data[i]) * float(data[j])
            i += 1
            j += 1
        elif ci < cj:
            i += 1
        else:
            j += 1
    return s


@nb.njit(cache=True)
def _dense_dot(emb, a, b):
    s = 0.0
    for d in range(emb.shape[1]):
        s += float(emb[a, d]) * float(emb[b, d])
    return s


@nb.njit(cache=True)
def _rescore(cand, k, has_dense, emb, has_lex, indptr, indices, data, w_dense, lo_d, sc_d, lo_l, sc_l, reserve, out_i, out_s):
    """For each row: unique candidates, score = w*(dense-lo_d)/sc_d + (1-w)*(lex-lo_l)/sc_l.

    With reserve, each signal's best candidate (by its own score) is kept in the top k.
    """
    n, m = cand.shape
    kk = out_i.shape[1]
    buf_i = np.empty(m, np.int64)
    buf_s = np.empty(m, np.float64)
    buf_d = np.empty(m, np.float64)
    buf_l = np.empty(m, np.float64)
    for i in range(n):
        c = 0
        for t in range(m):
            j = cand[i, t]
            if j < 0 or j == i:
                continue
            dup = False
            for u in range(c):
                if buf_i[u] == j:
                    dup = True
                    break
            if dup:
                continue
            dd = _dense_dot(emb, i, j) if has_dense else 0.0
            ll = _sparse_dot(indptr, indices, data, i, j) if has_lex else 0.0
            buf_i[c] = j
            buf_d[c] = dd
            buf_l[c] = ll
            s = 0.0
            if has_dense:
                s += w_dense * (dd - lo_d) / sc_d
            if has_lex:
                s += (1.0 - w_dense) * (ll - lo_l) / sc_l
            buf_s[c] = s
            c += 1
        # order: decreasing score, then increasing id (deterministic)
        idx = np.argsort(-buf_s[:c], kind="mergesort")
        # stable argsort on score; fix ties by id with an insertion pass
        for a in range(1, c):
            x = idx[a]
            b = a - 1
            while b >= 0 and buf_s[idx[b]] == buf_s[x] and buf_i[idx[b]] > buf_i[x]:
                idx[b + 1] = idx[b]
                b -= 1
            idx[b + 1] = x
        take = min(kk, c)
        chosen = idx[:take].copy()
        if reserve and c > take:
            # each signal's best candidate (ties: lower id) must be kept
            bd = -1
            bl = -1
            for u in range(c):
                if bd < 0 or buf_d[u] > buf_d[bd] or (buf_d[u] == buf_d[bd] and buf_i[u] < buf_i[bd]):
                    bd = u
                if bl < 0 or buf_l[u] > buf_l[bl] or (buf_l[u] == buf_l[bl] and buf_i[u] < buf_i[bl]):
                    bl = u
            for r in (bd, bl):
                if (r == bd and not has_dense) or (r == bl and not has_lex):
                    continue
                present = False
                for u in range(take):
                    if chosen[u] == r:
                        present = True
                if present:
                    continue
                # evict the lowest-scored entry that is not itself reserved
                for u in range(take - 1, -1, -1):
                    if (has_dense and chosen[u] == bd) or (has_lex and chosen[u] == bl):
                        continue
                    chosen[u] = r
                    break
            # back in score order
            for a in range(1, take):
                x = chosen[a]
                b = a - 1
                while b >= 0 and (buf_s[chosen[b]] < buf_s[x] or (buf_s[chosen[b]] == buf_s[x] and buf_i[chosen[b]] > buf_i[x])):
                    chosen[b + 1] = chosen[b]
                    b -= 1
                chosen[b + 1] = x
        for u in range(take):
            out_i[i, u] = buf_i[chosen[u]]
            out_s[i, u] = buf_s[chosen[u]]


def rescore(
    cand: np.ndarray,
    k: int,
    dense: np.ndarray | None = None,
    lexical=None,
    weight: float = 0.5,
    dense_scale: tuple[float, float] = (0.0, 1.0),
    lexical_scale: tuple[float, float] = (0.0, 1.0),
    reserve: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Rescore candidate ids [N, m] exactly; keep the top k per row.

    score = weight * (dense - lo_d) / scale_d + (1 - weight) * (lexical - lo_l) / scale_l,
    with only the signals given (a single signal with scale (0, 1) gives its raw cosine).
    """
    n = cand.shape[0]
    k_eff = max(0, min(k, n - 1))
    ids = np.full((n, k_eff), -1, dtype=np.int64)
    sims = np.zeros((n, k_eff), dtype=np.float32)
    if k_eff == 0 or cand.shape[1] == 0:
        return ids, sims
    has_d = dense is not None
    has_l = lexical is not None
    w = float(weight) if (has_d and has_l) else (1.0 if has_d else 0.0)
    emb = np.ascontiguousarray(dense, dtype=np.float32) if has_d else np.zeros((1, 1), np.float32)
    if has_l:
        indptr, indices, data = lexical.indptr.astype(np.int64), lexical.indices.astype(np.int64), lexical.data.astype(np.float32)
    else:
        indptr, indices, data = np.zeros(2, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    _rescore(
        np.ascontiguousarray(cand, dtype=np.int64), k_eff, has_d, emb, has_l, indptr, indices, data, w,
        float(dense_scale[0]), float(dense_scale[1]) or 1.0, float(lexical_scale[0]), float(lexical_scale[1]) or 1.0,
        bool(reserve), ids, sims,
    )
    if has_l and not has_d:
        ids[~(sims > 0)] = -1  # lexical alone: no shared term, no edge
        sims[ids < 0] = 0.0
    return ids, sims


# ---------------------------------------------------------------------------
# Scales and the hybrid graph
# ---------------------------------------------------------------------------


@nb.njit(cache=True)
def _pair_sims(a, b, has_dense, emb, indptr, indices, data, out):
    for p in range(len(a)):
        if has_dense:
            out[p] = _dense_dot(emb, a[p], b[p])
        else:
            out[p] = _sparse_dot(indptr, indices, data, a[p], b[p])


def signal_scale(ids: np.ndarray, sims: np.ndarray, dense=None, lexical=None, pairs: int = 20_000, seed: int = 0) -> tuple[float, float]:
    """(random-pair mean, top-1 mean minus it): maps a signal to 0 = chance, 1 = typical nearest neighbour."""
    n = ids.shape[0]
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, pairs)
    b = rng.integers(0, n, pairs)
    keep = a != b
    a, b = a[keep].astype(np.int64), b[keep].astype(np.int64)
    out = np.zeros(len(a), dtype=np.float64)
    if dense is not None:
        _pair_sims(a, b, True, np.ascontiguousarray(dense, dtype=np.float32), np.zeros(2, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), out)
    else:
        _pair_sims(a, b, False, np.zeros((1, 1), np.float32), lexical.indptr.astype(np.int64), lexical.indices.astype(np.int64), lexical.data.astype(np.float32), out)
    lo = float(out.mean()) if len(out) else 0.0
    top = sims[:, 0][ids[:, 0] >= 0] if ids.shape[1] else np.zeros(0)
    hi = float(top.mean()) if len(top) else 1.0
    return lo, max(hi - lo, 1e-6)


def hybrid_knn(
    emb: np.ndarray,
    x,
    k: int,
    weight: float = DEFAULT_HYBRID_WEIGHT,
    dense_knn: tuple[np.ndarray, np.ndarray] | None = None,
    lexical_knn_: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Merge each signal's kNN lists, rescore the union on a common scale, keep the top k.

    `weight` is the dense share (0 = lexical only, 1 = dense only). Scores below chance
    for both signals would be negative; they are floored at a tiny positive value so the
    pair stays an edge (it was a top-k neighbour of one signal).
    """
    d_ids, d_sims = dense_knn
    l_ids, l_sims = lexical_knn_
    d_scale = signal_scale(d_ids, d_sims, dense=emb, seed=seed)
    l_scale = signal_scale(l_ids, l_sims, lexical=x, seed=seed)
    cand = np.concatenate([d_ids, l_ids], axis=1)
    ids, sims = rescore(cand, k, dense=emb, lexical=x, weight=weight, dense_scale=d_scale, lexical_scale=l_scale, reserve=True)
    ok = ids >= 0
    sims[ok] = np.maximum(sims[ok], np.float32(1e-6))
    params = {
        "weight": weight,
        "dense_scale": [round(v, 6) for v in d_scale],
        "lexical_scale": [round(v, 6) for v in l_scale],
        "candidates": int(cand.shape[1]),
    }
    return ids, sims, params


def similarity_graph(
    similarity: str,
    emb: np.ndarray | None,
    texts: Sequence[str] | Iterable[str] | None,
    k: int,
    weighting: str = "tfidf",
    weight: float = DEFAULT_HYBRID_WEIGHT,
    lexical_method: str = "auto",
    index: str = "auto",
    nprobe: int | None = None,
    seed: int = 1234,
    dense_knn: tuple[np.ndarray, np.ndarray] | None = None,
    progress=None,
) -> tuple[np.ndarray, np.ndarray, SimilarityInfo]:
    """The traversal graph of one signal: (ids int64 [N, k], sims float32 [N, k], info).

    `dense_knn` (ids, sims) reuses a dense kNN already computed (the runner computes it
    once for dedup); otherwise it is computed here with FAISS.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity '{similarity}' ({', '.join(SIMILARITIES)})")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"hybrid weight must be between 0 and 1, got {weight}")
    if similarity in ("dense", "hybrid") and dense_knn is None:
        from .neighbors import knn_graph

        d_ids, d_sims, _ = knn_graph(np.asarray(emb), k=k, index=index, seed=seed, nprobe=nprobe, progress=progress)
        dense_knn = (d_ids, d_sims)
    if similarity == "dense":
        return dense_knn[0], dense_knn[1], SimilarityInfo("dense", dense_knn[0].shape[1])
    x = lexical_vectors(texts, weighting)
    l_ids, l_sims, lp = lexical_knn(x, k, method=lexical_method)
    params = {"weighting": weighting, "lexical": lp}
    if similarity == "lexical":
        return l_ids, l_sims, SimilarityInfo("lexical", l_ids.shape[1], params)
    ids, sims, hp = hybrid_knn(np.asarray(emb), x, k, weight, dense_knn, (l_ids, l_sims), seed=seed)
    return ids, sims, SimilarityInfo("hybrid", ids.shape[1], {**params, **hp})
