"""Which documents are related: dense, lexical (TF-IDF / BM25) and hybrid kNN graphs.

Dense embeddings capture topic; sparse lexical vectors capture shared rare terms (what
cross-referencing documents have in common). Every signal ends in the same arrays the
rest of the pipeline uses, ids int64 [N, k] (-1 = none) and sims float32 [N, k] sorted by
decreasing similarity, so dedup, traversal and metrics do not change.

- lexical: hashed term counts (no vocabulary held in memory) weighted by TF-IDF
  (sublinear tf) or BM25, rows L2-normalised, similarity = cosine. kNN is exact for
  small N (each row scored through the posting lists of its terms, never N x N) and
  approximate above `LEXICAL_EXACT_MAX_N`: candidates from the products of pruned rows
  (each document's heaviest terms, very common terms dropped), rescored exactly on the
  full sparse vectors. Terms come from text (`lexical_vectors`, scikit-learn's hasher and
  English stop words) or, tokenize-once, from the token store (`lexical_vectors_from_ids`:
  the same lower-cased words, rebuilt from the ids; stop words by document frequency).
  (A sparse random projection to 256-512 dims + FAISS was tried
  first: recall@10 only 0.34-0.56 on the BBC sample, so it was dropped.)
- hybrid: the kNN lists of both signals are merged per document, every candidate is
  rescored with both signals, and each signal is put on a common scale (0 = a random
  pair, 1 = a typical nearest neighbour) before the weighted sum. Each signal's top
  neighbour is always kept, so neither signal's strongest link is lost.

Memory: the lexical kNN and the hybrid merge run over blocks of `LEXICAL_BLOCK` rows, and
the sparse matrix is never copied whole after it is built (weights, stop words and the
numba kernels work on its own int32 / float32 arrays). The hybrid's dense dot products
can read the embeddings from their file (`rowfile.RowFile`): per block of rows, the
candidates are grouped by the slab of the file that holds them and each slab is read once
into a reused buffer, so the file stays in the page cache rather than in the process's
RSS. A hybrid graph at 1M documents then holds the lexical vectors, the two signals'
lists and one block (docs/benchmarks.md, "Memory at 1M").
"""

from __future__ import annotations

from .errors import DependencyMissing
import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numba as nb
import numpy as np

from .rowfile import SLAB_BYTES, RowFile, for_each_slab, row_source
from .sorting import sort_inplace
from .threads import over_row_ranges

SIMILARITIES = ("dense", "lexical", "hybrid")
WEIGHTINGS = ("tfidf", "bm25")
N_FEATURES = 1 << 20  # hashed vocabulary; collisions are rare at this size
LEXICAL_EXACT_MAX_N = 10_000  # exact lexical kNN up to here (20k synthetic docs: exact 45 s, pruned 20 s, recall 0.998; benchmarks/similarity.py --scale)
TRANSFORM_ROWS = 65_536  # rows weighted per step (bounds the temporaries of `LexicalModel.transform`)
LEXICAL_BLOCK = 65_536  # rows whose lexical candidates are held at once (docs/scale.md, memory)
HYBRID_PASSES = 16  # at most this many passes over an embeddings file per hybrid graph (larger blocks beyond 1M rows)
LEXICAL_MAX_DF = 0.2  # terms from ids: words in more than this share of documents are stop words (benchmarks/lexical_ids.py)


DEFAULT_HYBRID_WEIGHT = 0.1  # dense share of the hybrid (docs/quality.md round 2, with 16 walk neighbours; 0.5 did not hold up)


class SimilarityUnavailable(DependencyMissing):
    """The lexical signal needs scikit-learn and scipy (core dependencies, checked at use)."""


def _scipy():
    """The lexical signal from ids needs only scipy.sparse (importing scikit-learn costs seconds)."""
    try:
        import scipy.sparse  # noqa: F401
    except ImportError as e:
        raise SimilarityUnavailable("lexical and hybrid similarity need scipy (a core dependency of contextsort): pip install scipy") from e


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


@nb.njit(cache=True)
def _id_features(tokens, a, n, bigrams, n_uni, n_features, buf):
    """Feature of each id (id mod n_uni) and, with bigrams, of each pair of adjacent ids
    (a 64-bit mix, hashed into [n_uni, n_features)); returns how many were written to buf."""
    m = 0
    prev = np.uint64(0)
    for t in range(a, a + n):
        cur = np.uint64(tokens[t])
        buf[m] = np.int64(cur % np.uint64(n_uni))
        m += 1
        if bigrams and t > a:
            h = prev * np.uint64(0x9E3779B97F4A7C15) + cur + np.uint64(0x632BE59BD9B4E019)
            h ^= h >> np.uint64(29)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(32)
            buf[m] = n_uni + np.int64(h % np.uint64(n_features - n_uni))
            m += 1
        prev = cur
    return m


@nb.njit(cache=True)
def _distinct(values):
    """Number of distinct values (the nonzeros a document's feature list gives)."""
    f = values.copy()
    sort_inplace(f.view(np.uint64))  # feature ids are >= 0: the graph's key type, one compilation
    u = 0
    for e in range(len(f)):
        if e == 0 or f[e] != f[e - 1]:
            u += 1
    return u


@nb.njit(nogil=True, cache=True)
def _count_nnz_rows(r0, r1, tokens, start, length, bigrams, n_uni, n_features, nnz):
    for i in range(r0, r1):
        buf = np.empty(2 * length[i], np.int64)
        m = _id_features(tokens, start[i], length[i], bigrams, n_uni, n_features, buf)
        nnz[i] = _distinct(buf[:m])


@nb.njit(cache=True)
def _put_counts(features, first, indices, data):
    """A document's features (any order, repeats) as sorted distinct (feature, count) CSR entries from `first`."""
    f = features.copy()
    sort_inplace(f.view(np.uint64))  # feature ids are >= 0: the graph's key type, one compilation
    o = first - 1
    for e in range(len(f)):
        if e == 0 or f[e] != f[e - 1]:
            o += 1
            indices[o] = f[e]
            data[o] = 1.0
        else:
            data[o] += 1.0


@nb.njit(nogil=True, cache=True)
def _fill_counts_rows(r0, r1, tokens, start, length, bigrams, n_uni, n_features, indptr, indices, data):
    for i in range(r0, r1):
        buf = np.empty(2 * length[i], np.int64)
        m = _id_features(tokens, start[i], length[i], bigrams, n_uni, n_features, buf)
        _put_counts(buf[:m], indptr[i], indices, data)


def id_term_counts(tokens: np.ndarray, start: np.ndarray, length: np.ndarray, vocab_size: int,
                   bigrams: bool = True, n_features: int = N_FEATURES):
    """Term counts straight from token ids, CSR float32 [N, n_features] (sorted indices).

    Terms are the ids themselves (features 0..vocab_size-1) and, with `bigrams`, adjacent id
    pairs hashed into the remaining features: a word split into sub-word pieces is still one
    term. Document i is ``tokens[start[i] : start[i] + length[i]]`` (`tokens.content_spans`).
    Counting runs in numba over documents in parallel; the text is not read again.
    """
    _scipy()
    import scipy.sparse as sp

    start = np.ascontiguousarray(start, dtype=np.int64)
    length = np.ascontiguousarray(length, dtype=np.int64)
    n_uni = int(min(vocab_size, n_features // 2))
    nnz = np.zeros(len(start), dtype=np.int64)
    over_row_ranges(_count_nnz_rows, len(start), tokens, start, length, bool(bigrams), n_uni, int(n_features), nnz)
    indptr = np.zeros(len(start) + 1, dtype=np.int64)
    np.cumsum(nnz, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    data = np.empty(int(indptr[-1]), dtype=np.float32)
    over_row_ranges(_fill_counts_rows, len(start), tokens, start, length, bool(bigrams), n_uni, int(n_features), indptr,
                    indices, data)
    x = sp.csr_matrix((data, indices, indptr), shape=(len(start), int(n_features)))
    x.has_sorted_indices = True
    return x


WORD_BOUNDARY, WORD_CONTINUE, WORD_START = 0, 1, 2
HASH_BASE = 1099511628211  # odd: the polynomial string hash below is a bijection per length
MASK64 = (1 << 64) - 1


def token_surfaces(tok) -> list[str]:
    """The text each token id of `tok` stands for (`TextTokenizer.token_surfaces`)."""
    return tok.token_surfaces()


WORD_PIECE = re.compile("[\\w\udc80-\udcff]+")  # \w is str.isalnum() or '_'; escaped bytes count as word characters


def word_pieces(surfaces: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per token id: (kind, hash, base**len, len) of its lower-cased word characters.

    kind: WORD_START (leading space, then word characters), WORD_CONTINUE (word characters
    only: the piece extends the current word) or WORD_BOUNDARY (anything else ends a word).
    Word characters are those of the regex \\w (letters, digits, '_') and escaped bytes
    (U+DC80..U+DCFF: pieces of a multi-byte character, most often a letter).
    The hash of a word is then the same however the tokenizer split it into pieces.
    (The hashes are computed in numba over the code points of all pieces at once: a loop
    over characters in Python cost 0.1 s per run for a 32k vocabulary.)
    """
    v = len(surfaces)
    kind = np.zeros(v, np.int8)
    ln = np.zeros(v, np.int64)
    words, lowered = [], []
    for i, s in enumerate(surfaces):
        body = s.lstrip(" ")
        if body and WORD_PIECE.fullmatch(body):
            kind[i] = WORD_START if len(body) < len(s) else WORD_CONTINUE
            ln[i] = len(body)
            words.append(i)
            lowered.append(body.lower())  # (a word of escaped bytes hashes differently from its decoded text)
    codes = np.frombuffer("".join(lowered).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    ends = np.cumsum(np.fromiter(map(len, lowered), np.int64, len(lowered)))
    h = np.zeros(v, np.uint64)
    p = np.ones(v, np.uint64)
    _piece_hashes(codes, ends, np.asarray(words, np.int64), np.uint64(HASH_BASE), h, p)
    return kind, h, p, ln


@nb.njit(cache=True)
def _piece_hashes(codes, ends, words, base, h, p):
    """h[words[w]] = sum of code * base**(places after it) over the w-th piece's code points
    (the piece codes[ends[w - 1]:ends[w]]), p[words[w]] = base**len, both mod 2**64."""
    a = 0
    for w in range(len(words)):
        hv = np.uint64(0)
        pv = np.uint64(1)
        for c in range(a, ends[w]):
            hv = hv * base + np.uint64(codes[c])
            pv = pv * base
        h[words[w]] = hv
        p[words[w]] = pv
        a = ends[w]


@nb.njit(cache=True)
def _mix(h):
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


@nb.njit(cache=True)
def _word_features(tokens, a, n, kind, ph, pp, pl, n_features, buf):
    """Hashed features of the words (2+ characters) of tokens[a:a+n]; returns how many."""
    m = 0
    cur = np.uint64(0)
    cur_len = 0
    for t in range(a, a + n + 1):
        k = kind[tokens[t]] if t < a + n else 0
        if k != 1 and cur_len >= 2:  # the current word ends here
            buf[m] = np.int64(_mix(cur) % np.uint64(n_features))
            m += 1
        if k == 0:
            cur_len = 0
            cur = np.uint64(0)
        elif k == 2:
            cur = ph[tokens[t]]
            cur_len = pl[tokens[t]]
        else:
            cur = cur * pp[tokens[t]] + ph[tokens[t]]
            cur_len += pl[tokens[t]]
    return m


@nb.njit(nogil=True, cache=True)
def _word_nnz_rows(r0, r1, tokens, start, length, kind, ph, pp, pl, n_features, nnz):
    """Distinct features of documents r0..r1-1, counted with a stamp per feature (the document
    that last saw it) instead of a sort; one stamp array per range (`threads.over_row_ranges`)."""
    seen = np.full(n_features, -1, np.int32)
    buf = np.empty(0, np.int64)
    for i in range(r0, r1):
        if len(buf) < length[i] + 1:
            buf = np.empty(2 * (length[i] + 1), np.int64)
        m = _word_features(tokens, start[i], length[i], kind, ph, pp, pl, n_features, buf)
        u = 0
        for e in range(m):
            f = buf[e]
            u += seen[f] != i
            seen[f] = i
        nnz[i] = u


@nb.njit(nogil=True, cache=True)
def _word_fill_rows(r0, r1, tokens, start, length, kind, ph, pp, pl, n_features, indptr, indices, data):
    for i in range(r0, r1):
        buf = np.empty(length[i] + 1, np.int64)
        m = _word_features(tokens, start[i], length[i], kind, ph, pp, pl, n_features, buf)
        _put_counts(buf[:m], indptr[i], indices, data)


def word_term_counts(tokens: np.ndarray, start: np.ndarray, length: np.ndarray, pieces, n_features: int = N_FEATURES):
    """Hashed counts of the lower-cased words (2+ characters) that the token ids spell,
    CSR float32 [N, n_features]: the terms scikit-learn's default HashingVectorizer sees,
    rebuilt from the ids (`word_pieces`) without reading or re-tokenizing the text."""
    _scipy()
    import scipy.sparse as sp

    kind, ph, pp, pl = pieces
    start = np.ascontiguousarray(start, dtype=np.int64)
    length = np.ascontiguousarray(length, dtype=np.int64)
    nnz = np.zeros(len(start), dtype=np.int64)
    over_row_ranges(_word_nnz_rows, len(start), tokens, start, length, kind, ph, pp, pl, int(n_features), nnz)
    indptr = np.zeros(len(start) + 1, dtype=np.int64)
    np.cumsum(nnz, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    data = np.empty(int(indptr[-1]), dtype=np.float32)
    over_row_ranges(_word_fill_rows, len(start), tokens, start, length, kind, ph, pp, pl, int(n_features), indptr, indices, data)
    x = sp.csr_matrix((data, indices, indptr), shape=(len(start), int(n_features)))
    x.has_sorted_indices = True
    return x


def term_df(counts) -> np.ndarray:
    """Documents per term (int64 [n_features]) of a CSR matrix with distinct entries per row.
    (np.bincount would first copy the int32 indices to int64: hundreds of MB at 1M documents.)"""
    df = np.zeros(counts.shape[1], dtype=np.int64)
    _count_terms(counts.indices, df)
    return df


@nb.njit(cache=True)
def _count_terms(indices, df):
    for e in range(len(indices)):
        df[indices[e]] += 1


def drop_common_terms(counts, max_df: float = 0.5, copy: bool = True):
    """Counts without the terms found in more than `max_df` of the documents: stop words by
    document frequency, for any language and tokenizer (instead of an English word list).
    `copy=False` edits `counts` in place and gives the freed tail of its arrays back (no
    second copy of a corpus-sized matrix; the dropped terms are often a third of it)."""
    n = counts.shape[0]
    df = term_df(counts)
    y = counts.copy() if copy else counts
    nnz = _drop_terms(y.indptr, y.indices, y.data, df, float(max_df * n))
    for name in ("indices", "data"):
        a = getattr(y, name)
        if a.base is None and a.flags.owndata:
            a.resize(nnz, refcheck=False)  # in place: the allocator shrinks the block, no copy
        else:
            setattr(y, name, a[:nnz].copy())
    return y


@nb.njit(cache=True)
def _drop_terms(indptr, indices, data, df, limit):
    """Compact the rows in place without the entries of terms in more than `limit` documents
    (and without zeros, as scipy's eliminate_zeros); rewrites indptr, returns the new nnz."""
    o = 0
    for i in range(len(indptr) - 1):
        a, b = indptr[i], indptr[i + 1]
        indptr[i] = o
        for e in range(a, b):
            if df[indices[e]] <= limit and data[e] != 0.0:
                indices[o] = indices[e]
                data[o] = data[e]
                o += 1
    indptr[len(indptr) - 1] = o
    return o


def lexical_vectors_from_ids(tokens: np.ndarray, start: np.ndarray, length: np.ndarray, tok,
                             weighting: str = "tfidf", terms: str = "words", max_df: float = LEXICAL_MAX_DF):
    """Unit-norm TF-IDF or BM25 vectors from a token store, CSR float32 [N, N_FEATURES].

    `tok`: the tokenizer that made the ids. `terms`: "words" (the words the ids spell,
    `word_term_counts`) or "ids" (ids and adjacent-id pairs, `id_term_counts`). Terms in more
    than `max_df` of the documents are dropped (stop words by document frequency).
    """
    if terms == "words":
        counts = word_term_counts(tokens, start, length, word_pieces(token_surfaces(tok)))
    elif terms == "ids":
        counts = id_term_counts(tokens, start, length, tok.vocab_size, bigrams=True)
    else:
        raise ValueError(f"unknown lexical terms '{terms}' (words, ids)")
    counts = drop_common_terms(counts, max_df, copy=False)
    return LexicalModel.fit(counts, weighting).transform(counts, copy=False)


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
        df = term_df(counts)
        lens = np.asarray(counts.sum(axis=1)).ravel()
        return cls(weighting, counts.shape[0], df, float(lens.mean()) if len(lens) else 0.0)

    def idf(self) -> np.ndarray:
        n, df = self.n_docs, self.df.astype(np.float64)
        if self.weighting == "bm25":
            return np.log1p((n - df + 0.5) / (df + 0.5))
        return np.log((1.0 + n) / (1.0 + df)) + 1.0  # smooth idf, as scikit-learn

    def transform(self, counts, copy: bool = True):
        """Weighted, L2-normalised rows (cosine = dot). All-zero rows stay zero.
        `copy=False` weights a float32 `counts` in place; the element-wise steps run over
        blocks of rows, so their temporaries stay small at any corpus size."""
        x = counts.astype(np.float32, copy=copy)
        idf = self.idf().astype(np.float32)
        norm = None
        if self.weighting == "bm25":
            lens = np.asarray(x.sum(axis=1)).ravel()
            norm = (self.k1 * (1.0 - self.b + self.b * lens / max(self.avg_len, 1e-9))).astype(np.float32)
        for r0 in range(0, x.shape[0], TRANSFORM_ROWS):
            r1 = min(x.shape[0], r0 + TRANSFORM_ROWS)
            a, b = int(x.indptr[r0]), int(x.indptr[r1])
            tf = x.data[a:b]
            if norm is not None:
                row_norm = np.repeat(norm[r0:r1], np.diff(x.indptr[r0 : r1 + 1]))
                tf[:] = tf * (self.k1 + 1.0) / (tf + row_norm)
            else:
                tf[:] = 1.0 + np.log(tf)
            tf *= idf[x.indices[a:b]]
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


def compact_columns(x):
    """CSR x with its columns renumbered 0..u-1 (u: the columns in use), in place, keeping
    their order: each row's entries stay in the same order, so every dot product (and the
    sum of its products, term by term) is the same, bit for bit. Returns the matrix of shape
    [n, u] over the same arrays. Why: the rescoring scatters a row into a dense array of
    x.shape[1] floats per thread and reads it at random: 30k columns in use at 31k documents
    fit in a core's cache, the 1M hashed columns (4 MB) do not."""
    import scipy.sparse as sp

    used = term_df(x) > 0
    new_id = np.cumsum(used, dtype=np.int64) - 1
    _renumber(x.indices, new_id)
    y = sp.csr_matrix((x.data, x.indices, x.indptr), shape=(x.shape[0], max(1, int(used.sum()))), copy=False)
    y.has_sorted_indices = x.has_sorted_indices
    return y


@nb.njit(cache=True)
def _renumber(indices, new_id):
    for e in range(len(indices)):
        indices[e] = new_id[indices[e]]


def prune_rows(x, top_terms: int = 64, max_df: int = 1000):
    """Each row's `top_terms` heaviest terms, without terms in more than `max_df` documents.

    The heaviest TF-IDF / BM25 terms of a document are its rare, repeated ones: what
    related documents share. Products of pruned rows cost far less than full ones and
    still find most true neighbours (recall measured in benchmarks/similarity.py).
    Built straight into a new, smaller matrix (x is not copied first).
    """
    import scipy.sparse as sp

    df = term_df(x)
    n = x.shape[0]
    nnz = np.zeros(n, dtype=np.int64)
    over_row_ranges(_prune_count_rows, n, x.indptr, x.indices, x.data, df, int(max_df), int(top_terms), nnz)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(nnz, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=x.indices.dtype)
    data = np.empty(int(indptr[-1]), dtype=x.data.dtype)
    over_row_ranges(_prune_fill_rows, n, x.indptr, x.indices, x.data, df, int(max_df), int(top_terms), indptr, indices, data)
    y = sp.csr_matrix((data, indices, indptr), shape=x.shape)
    y.has_sorted_indices = x.has_sorted_indices
    return y


@nb.njit(cache=True)
def _prune_row(indices, data, a, b, df, max_df, m, out_i, out_v):
    """Entries of row a..b that `prune_rows` keeps, in column order, written to out_i/out_v;
    returns how many. Terms in more than max_df documents weigh 0, then only the m heaviest
    stay (at the threshold weight, the first columns while room is left); zeros are dropped."""
    w = b - a
    vals = np.empty(w, data.dtype)
    for e in range(w):
        vals[e] = data[a + e] if df[indices[a + e]] <= max_df else 0.0
    if w > m:
        thr = np.sort(vals)[w - m]
        kept = 0
        for e in range(w):
            if vals[e] > thr:
                kept += 1
        room = m - kept
        for e in range(w):
            if vals[e] < thr:
                vals[e] = 0.0
            elif vals[e] == thr:
                if room > 0:
                    room -= 1
                else:
                    vals[e] = 0.0
    c = 0
    for e in range(w):
        if vals[e] != 0.0:
            out_i[c] = indices[a + e]
            out_v[c] = vals[e]
            c += 1
    return c


@nb.njit(nogil=True, cache=True)
def _prune_count_rows(r0, r1, indptr, indices, data, df, max_df, m, nnz):
    """Entries `_prune_row` keeps per row, rows r0..r1-1. A row without negative (or NaN) weights
    keeps its m heaviest nonzero ones, so only the nonzero count is needed (no sort): min(m, nonzeros)."""
    for i in range(r0, r1):
        nonzero = 0
        plain = True
        for e in range(indptr[i], indptr[i + 1]):
            if df[indices[e]] <= max_df:
                v = data[e]
                nonzero += v != 0.0
                plain &= v >= 0.0
        if plain:
            nnz[i] = min(m, nonzero)
            continue
        w = indptr[i + 1] - indptr[i]
        out_i = np.empty(w, indices.dtype)
        out_v = np.empty(w, data.dtype)
        nnz[i] = _prune_row(indices, data, indptr[i], indptr[i + 1], df, max_df, m, out_i, out_v)


@nb.njit(nogil=True, cache=True)
def _prune_fill_rows(r0, r1, indptr, indices, data, df, max_df, m, y_ptr, y_ind, y_data):
    for i in range(r0, r1):
        w = indptr[i + 1] - indptr[i]
        out_i = np.empty(w, indices.dtype)
        out_v = np.empty(w, data.dtype)
        c = _prune_row(indices, data, indptr[i], indptr[i + 1], df, max_df, m, out_i, out_v)
        for e in range(c):
            y_ind[y_ptr[i] + e] = out_i[e]
            y_data[y_ptr[i] + e] = out_v[e]


# ---------------------------------------------------------------------------
# Lexical kNN
# ---------------------------------------------------------------------------


@nb.njit(inline="always")
def _ranks_below(s_a, i_a, s_b, i_b):
    """(s_a, i_a) comes after (s_b, i_b) in a kNN list: lower similarity, or equal and higher id."""
    return s_a < s_b or (s_a == s_b and i_a > i_b)


@nb.njit(cache=True)
def _heap_sift_down(hs, hi, size, pos, v, j):
    """Put (v, j) at `pos` of the heap hs/hi[:size] (root = the entry ranked last) and sift it down."""
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        if c + 1 < size and _ranks_below(hs[c + 1], hi[c + 1], hs[c], hi[c]):
            c += 1
        if _ranks_below(hs[c], hi[c], v, j):
            hs[pos] = hs[c]
            hi[pos] = hi[c]
            pos = c
        else:
            break
    hs[pos] = v
    hi[pos] = j


@nb.njit(cache=True)
def _postings_topk_rows(r0, r1, first, indptr, indices, data, t_ptr, t_rows, t_data, acc, touched, out_i, out_s):
    """Rows r0..r1-1 (output rows r - first): dot products with every row sharing a term (scatter over the term's
    postings, in the row's term order: the sums of a sparse product), then the top k by
    (decreasing similarity, increasing id); self and non-positive scores skipped.

    Why it is fast: the scatter has no branch (a row's first touch is counted, not tested:
    `touched` needs one spare slot), and the top k is a heap whose root is the entry ranked
    last, so a candidate that enters costs log k moves, not k (the scatter is 2/3 of the time).
    The result is the same as a full sort: the top k under a total order."""
    k = out_i.shape[1]
    hs = np.empty(k, np.float32)
    hi = np.empty(k, np.int64)
    for r in range(r0, r1):
        m = 0
        for e in range(indptr[r], indptr[r + 1]):
            w = data[e]
            t = indices[e]
            for p in range(t_ptr[t], t_ptr[t + 1]):
                j = np.uint64(t_rows[p])  # unsigned: no wraparound check for negative indices
                a = acc[j]
                touched[np.uint64(m)] = j
                m += a == 0.0
                acc[j] = a + w * t_data[p]
        acc[r] = 0.0  # never its own neighbour
        filled = 0
        for u in range(m):
            j = touched[u]
            v = acc[np.uint64(j)]
            acc[np.uint64(j)] = 0.0
            if not v > 0.0:
                continue
            if filled < k:  # sift up
                pos = filled
                filled += 1
                while pos > 0:
                    par = (pos - 1) >> 1
                    if not _ranks_below(v, j, hs[par], hi[par]):
                        break
                    hs[pos] = hs[par]
                    hi[pos] = hi[par]
                    pos = par
                hs[pos] = v
                hi[pos] = j
            elif _ranks_below(hs[0], hi[0], v, j):
                _heap_sift_down(hs, hi, k, 0, v, j)
        # the heap in order: the entry ranked last leaves the root for the back, filled times
        for last in range(filled - 1, -1, -1):
            out_s[r - first, last] = hs[0]
            out_i[r - first, last] = hi[0]
            if last > 0:
                _heap_sift_down(hs, hi, last, 0, hs[last], hi[last])


@nb.njit(nogil=True, cache=True)
def _postings_topk_range(r0, r1, first, indptr, indices, data, t_ptr, t_rows, t_data, n_docs, out_i, out_s):
    """`_postings_topk_rows` of output rows r0..r1-1 (rows first + r0.. of the matrix) with
    scatter arrays of their own (`threads.over_row_ranges`: same result for any thread count)."""
    acc = np.zeros(n_docs, np.float32)
    touched = np.empty(n_docs + 1, np.int64)
    _postings_topk_rows(first + r0, first + r1, first, indptr, indices, data, t_ptr, t_rows, t_data, acc, touched, out_i, out_s)


def postings(x):
    """The transposed matrix (each term's documents, ascending) of CSR x: the index that
    `postings_topk` scatters through."""
    x.sort_indices()
    xt = x.T.tocsr()
    xt.sort_indices()
    return xt


def postings_topk(x, xt, k: int, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine neighbours (ids int64, sims float64 [last - first, k]) of rows
    first..last-1 of unit-norm CSR x among all its rows, through its postings xt."""
    n = x.shape[0]
    ids = np.full((last - first, k), -1, dtype=np.int64)
    out_s = np.zeros((last - first, k), dtype=np.float64)
    if k == 0 or last <= first:
        return ids, out_s
    over_row_ranges(_postings_topk_range, last - first, first, x.indptr, x.indices, x.data, xt.indptr, xt.indices, xt.data,
                    n, ids, out_s)
    return ids, out_s


def lexical_knn_exact(x, k: int, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine neighbours of unit-norm sparse rows (pairs sharing no term: id -1).

    Each row is scored against the rows that share one of its terms through the terms'
    posting lists (the transposed matrix), in numba over chunks of rows in parallel; no
    product matrix is built. Results do not depend on the number of threads.
    """
    n = x.shape[0]
    k_eff = max(0, min(k, n - 1))
    ids = np.full((n, k_eff), -1, dtype=np.int64)
    sims = np.zeros((n, k_eff), dtype=np.float32)
    if k_eff == 0:
        return ids, sims
    x = x.tocsr().astype(np.float32, copy=False)
    xt = postings(x)
    for r0 in range(0, n, LEXICAL_BLOCK):
        r1 = min(n, r0 + LEXICAL_BLOCK)
        ids[r0:r1], sims[r0:r1] = postings_topk(x, xt, k_eff, r0, r1)
        if progress is not None:
            progress(r1 - r0)
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
    """Top-k lexical neighbours: exact (every shared term) or pruned (candidates from each
    document's heaviest terms, then exact rescoring on the full vectors). Pruned runs over
    blocks of `LEXICAL_BLOCK` rows: only one block's candidates are held at a time."""
    n = x.shape[0]
    if method == "auto":
        method = "exact" if n <= LEXICAL_EXACT_MAX_N else "pruned"
    if method == "exact":
        ids, sims = lexical_knn_exact(x, k, progress=progress)
        return ids, sims, {"method": "exact"}
    if method != "pruned":
        raise ValueError(f"unknown lexical kNN method '{method}' (auto, exact, pruned)")
    kc = max(0, min(candidates or 4 * k, n - 1))
    k_eff = max(0, min(k, n - 1))
    x = x.tocsr().astype(np.float32, copy=False)
    x.sort_indices()
    xp = prune_rows(x, top_terms, max_df)
    xt = postings(xp)
    ids = np.full((n, k_eff), -1, dtype=np.int64)
    sims = np.zeros((n, k_eff), dtype=np.float32)
    for r0 in range(0, n, LEXICAL_BLOCK):
        r1 = min(n, r0 + LEXICAL_BLOCK)
        cand, _ = postings_topk(xp, xt, kc, r0, r1)
        ids[r0:r1], sims[r0:r1] = rescore(cand, k, lexical=x, first=r0, n_docs=n)
        if progress is not None:
            progress(r1 - r0)
    return ids, sims, {"method": "pruned", "top_terms": top_terms, "max_df": max_df, "candidates": kc}


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


@nb.njit(nogil=True, cache=True)
def _rescore_range(r0, r1, cand, first, has_dense, dots, has_lex, indptr, indices, data, n_features, w_dense, lo_d, sc_d,
                   lo_l, sc_l, reserve, out_i, out_s):
    """`_rescore_rows` of rows r0..r1-1 with a row of its own (rows are independent: the same
    result for any split, `threads.over_row_ranges`). Each range zeroes a row of n_features
    floats (4 MB for 2**20 hashed columns), so ranges are few."""
    row = np.zeros(n_features if has_lex else 1, np.float32)
    _rescore_rows(r0, r1, first, cand, has_dense, dots, has_lex, indptr, indices, data, row,
                  w_dense, lo_d, sc_d, lo_l, sc_l, reserve, out_i, out_s)


@nb.njit(cache=True)
def _gather_dot(indptr, indices, data, j, row):
    """Dot product of sparse row j with the row scattered into the dense `row`: the same
    products, summed in the same (column) order, as `_sparse_dot`, without the merge's branches
    (the products of columns the row lacks are zeros, which leave a sum of finite floats as it is)."""
    s = 0.0
    for e in range(indptr[j], indptr[j + 1]):
        s += float(row[np.uint64(indices[e])]) * float(data[e])  # unsigned: no wraparound check
    return s


@nb.njit(cache=True)
def _gather_dot2(indptr, indices, data, ja, jb, row):
    """`_gather_dot` of rows ja and jb, their sums interleaved: two independent chains of
    additions keep the core busy where one waits on each addition (same sums, bit for bit)."""
    a, b = indptr[ja], indptr[jb]
    la, lb = indptr[ja + 1] - a, indptr[jb + 1] - b
    sa = 0.0
    sb = 0.0
    for q in range(min(la, lb)):
        sa += float(row[np.uint64(indices[a + q])]) * float(data[a + q])
        sb += float(row[np.uint64(indices[b + q])]) * float(data[b + q])
    for q in range(lb, la):
        sa += float(row[np.uint64(indices[a + q])]) * float(data[a + q])
    for q in range(la, lb):
        sb += float(row[np.uint64(indices[b + q])]) * float(data[b + q])
    return sa, sb


@nb.njit(cache=True)
def _rescore_rows(r0, r1, first, cand, has_dense, dots, has_lex, indptr, indices, data, row, w_dense, lo_d, sc_d, lo_l, sc_l, reserve, out_i, out_s):
    """For rows r0..r1-1 of cand (document first + row): unique candidates, score = w*(dense-lo_d)/sc_d + (1-w)*(lex-lo_l)/sc_l.
    dots[i, t]: the dense dot product of the document and candidate cand[i, t] (`candidate_dots`).

    With reserve, each signal's best candidate (by its own score) is kept in the top k.
    """
    m = cand.shape[1]
    kk = out_i.shape[1]
    buf_i = np.empty(m, np.int64)
    buf_s = np.empty(m, np.float64)
    buf_d = np.empty(m, np.float64)
    buf_l = np.empty(m, np.float64)
    chosen = np.empty(kk, np.int64)
    for i in range(r0, r1):
        doc = first + i
        if has_lex:  # the document's lexical row, scattered once for all its candidates
            for e in range(indptr[doc], indptr[doc + 1]):
                row[indices[e]] = data[e]
        c = 0
        for t in range(m):
            j = cand[i, t]
            if j < 0 or j == doc:
                continue
            dup = False
            for u in range(c):  # no early exit: the compiler checks several at once
                dup |= buf_i[u] == j
            if dup:
                continue
            buf_i[c] = j
            buf_d[c] = dots[i, t] if has_dense else 0.0
            buf_l[c] = 0.0
            c += 1
        if has_lex:  # the candidates' lexical dots, two at a time
            for u in range(0, c - 1, 2):
                buf_l[u], buf_l[u + 1] = _gather_dot2(indptr, indices, data, buf_i[u], buf_i[u + 1], row)
            if c % 2:
                buf_l[c - 1] = _gather_dot(indptr, indices, data, buf_i[c - 1], row)
        for u in range(c):
            s = 0.0
            if has_dense:
                s += w_dense * (buf_d[u] - lo_d) / sc_d
            if has_lex:
                s += (1.0 - w_dense) * (buf_l[u] - lo_l) / sc_l
            buf_s[u] = s
        # the best `take` by decreasing score, then increasing id (deterministic), by insertion:
        # no sort of all c candidates (and none of numba's sorts, slow to compile on a first run)
        take = min(kk, c)
        filled = 0
        for u in range(c if take > 0 else 0):
            su = buf_s[u]
            iu = buf_i[u]
            if filled == take:
                last = chosen[take - 1]
                if su < buf_s[last] or (su == buf_s[last] and iu > buf_i[last]):
                    continue
                pos = take - 1
            else:
                pos = filled
                filled += 1
            while pos > 0 and (buf_s[chosen[pos - 1]] < su or (buf_s[chosen[pos - 1]] == su and buf_i[chosen[pos - 1]] > iu)):
                chosen[pos] = chosen[pos - 1]
                pos -= 1
            chosen[pos] = u
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
        if has_lex:
            for e in range(indptr[doc], indptr[doc + 1]):
                row[indices[e]] = 0.0


@nb.njit(nogil=True, cache=True)
def _slab_dots(queries, slab, s0, cand, pairs, dots):
    """dots[i, t] = queries[i] . slab[cand[i, t] - s0] for the flat pair indices p = i * c + t in
    `pairs`: the products and summation order of `_dense_dot` (bit-identical results), four
    pairs at a time (four independent chains of additions: one alone waits on each addition).
    Serial and without the GIL: `candidate_dots` runs one slab per thread."""
    c = cand.shape[1]
    dim = queries.shape[1]
    n4 = len(pairs) - len(pairs) % 4
    for u in range(0, n4, 4):
        i0, i1, i2, i3 = pairs[u] // c, pairs[u + 1] // c, pairs[u + 2] // c, pairs[u + 3] // c
        t0, t1, t2, t3 = pairs[u] - i0 * c, pairs[u + 1] - i1 * c, pairs[u + 2] - i2 * c, pairs[u + 3] - i3 * c
        j0, j1, j2, j3 = cand[i0, t0] - s0, cand[i1, t1] - s0, cand[i2, t2] - s0, cand[i3, t3] - s0
        a0 = a1 = a2 = a3 = 0.0
        for d in range(dim):
            a0 += float(queries[i0, d]) * float(slab[j0, d])
            a1 += float(queries[i1, d]) * float(slab[j1, d])
            a2 += float(queries[i2, d]) * float(slab[j2, d])
            a3 += float(queries[i3, d]) * float(slab[j3, d])
        dots[i0, t0] = a0
        dots[i1, t1] = a1
        dots[i2, t2] = a2
        dots[i3, t3] = a3
    for u in range(n4, len(pairs)):
        i = pairs[u] // c
        t = pairs[u] - i * c
        j = cand[i, t] - s0
        a = 0.0
        for d in range(dim):
            a += float(queries[i, d]) * float(slab[j, d])
        dots[i, t] = a


@nb.njit(cache=True)
def _needed_pairs(cand, first, keep):
    """keep[i, t]: cand[i, t] is a candidate the rescoring scores (not -1, not the document
    first + i itself, not a repeat of an earlier entry of its row); returns how many."""
    c = cand.shape[1]
    total = 0
    for i in range(cand.shape[0]):
        for t in range(c):
            j = cand[i, t]
            ok = j >= 0 and j != first + i
            for u in range(t):
                if ok and cand[i, u] == j:
                    ok = False
            keep[i, t] = ok
            if ok:
                total += 1
    return total


@nb.njit(cache=True)
def _group_by_slab(cand, keep, slab_rows, n_slabs, ptr, pairs):
    """Counting sort of the flat indices of cand's kept entries by slab (id // slab_rows):
    slab s's pairs are pairs[ptr[s]:ptr[s + 1]], in ascending index order."""
    flat = cand.ravel()
    kept = keep.ravel()
    for p in range(len(flat)):
        if kept[p]:
            ptr[flat[p] // slab_rows + 1] += 1
    for s in range(n_slabs):
        ptr[s + 1] += ptr[s]
    fill = ptr[:-1].copy()
    for p in range(len(flat)):
        if kept[p]:
            s = flat[p] // slab_rows
            pairs[fill[s]] = p
            fill[s] += 1


def candidate_dots(emb, cand: np.ndarray, first: int, slab_rows: int | None = None) -> np.ndarray:
    """Dense dot products, float64 [m, c], of document first + i with candidate cand[i, t]
    (0 where cand < 0, for the document itself and for repeats in a row, which the rescoring
    skips). `emb`: an array or a `rowfile.RowFile`. From a file, the block's own
    rows are read once and the candidates' rows in one pass of slabs, each pair computed
    when its candidate's slab is in the buffer: the process never maps the file, so its
    pages stay in the page cache and out of the RSS (docs/benchmarks.md, "Memory at 1M").
    `slab_rows`: rows per slab (default: `rowfile.SLAB_BYTES` of them from a file, an array in
    as many slabs as threads).
    Slabs are shared among numba's number of threads (results do not depend on it)."""
    src = row_source(emb)
    m, c = cand.shape
    dots = np.zeros((m, c), np.float64)
    if m == 0 or c == 0:
        return dots
    as_f32 = (lambda a: np.ascontiguousarray(a, dtype=np.float32))
    keep = np.empty(cand.shape, np.bool_)
    n_pairs = _needed_pairs(cand, int(first), keep)
    queries = as_f32(src.read(first, first + m))
    n = len(src)
    if not slab_rows:  # from a file: SLAB_BYTES at a time; in memory: one slab per thread
        slab_rows = SLAB_BYTES // max(1, src.row_bytes) if isinstance(src, RowFile) else -(-n // nb.get_num_threads())
    slab_rows = max(1, slab_rows)
    n_slabs = -(-n // slab_rows)
    ptr = np.zeros(n_slabs + 1, np.int64)
    pairs = np.empty(n_pairs, np.int64)
    _group_by_slab(cand, keep, slab_rows, n_slabs, ptr, pairs)
    del keep

    def visit(k: int, s0: int, rows: np.ndarray) -> None:  # pairs of different slabs write different entries
        _slab_dots(queries, as_f32(rows), s0, cand, pairs[ptr[k]:ptr[k + 1]], dots)

    for_each_slab(src, slab_rows, ptr[1:] > ptr[:-1], nb.get_num_threads(), visit)
    return dots


def rescore(
    cand: np.ndarray,
    k: int,
    dense: np.ndarray | None = None,
    lexical=None,
    weight: float = 0.5,
    dense_scale: tuple[float, float] = (0.0, 1.0),
    lexical_scale: tuple[float, float] = (0.0, 1.0),
    reserve: bool = False,
    first: int = 0,
    n_docs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rescore candidate ids [m, c] of documents first..first+m-1 exactly; keep the top k per row.
    `dense`: the embeddings, an array or a `rowfile.RowFile` (rows read slab by slab).

    score = weight * (dense - lo_d) / scale_d + (1 - weight) * (lexical - lo_l) / scale_l,
    with only the signals given (a single signal with scale (0, 1) gives its raw cosine).
    `n_docs`: the corpus size (default m: cand covers every document).
    """
    n = cand.shape[0]
    k_eff = max(0, min(k, (n if n_docs is None else n_docs) - 1))
    ids = np.full((n, k_eff), -1, dtype=np.int64)
    sims = np.zeros((n, k_eff), dtype=np.float32)
    if k_eff == 0 or cand.shape[1] == 0:
        return ids, sims
    has_d = dense is not None
    has_l = lexical is not None
    w = float(weight) if (has_d and has_l) else (1.0 if has_d else 0.0)
    cand = np.ascontiguousarray(cand, dtype=np.int64)
    dots = candidate_dots(dense, cand, first) if has_d else np.zeros((1, 1), np.float64)
    if has_l:  # the matrix's own arrays (int32 indices): no corpus-sized copies
        indptr, indices, data = lexical.indptr, lexical.indices, np.asarray(lexical.data, dtype=np.float32)
    else:
        indptr, indices, data = np.zeros(2, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
    over_row_ranges(
        _rescore_range, len(cand), cand, int(first), has_d, dots, has_l, indptr, indices, data,
        int(lexical.shape[1]) if has_l else 1, w,
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
    """(random-pair mean, top-1 mean minus it): maps a signal to 0 = chance, 1 = typical nearest neighbour.
    `dense`: the embeddings, an array or a `rowfile.RowFile`."""
    n = ids.shape[0]
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, pairs)
    b = rng.integers(0, n, pairs)
    keep = a != b
    a, b = a[keep].astype(np.int64), b[keep].astype(np.int64)
    out = np.zeros(len(a), dtype=np.float64)
    if dense is not None:  # the sampled rows only (gathered from a file in one pass, `RowFile.take`)
        rows = np.ascontiguousarray(row_source(dense).take(np.concatenate([a, b])), dtype=np.float32)
        local = np.arange(2 * len(a), dtype=np.int64)
        _pair_sims(local[: len(a)], local[len(a):], True, rows, np.zeros(2, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), out)
    else:
        _pair_sims(a, b, False, np.zeros((1, 1), np.float32), lexical.indptr, lexical.indices, np.asarray(lexical.data, dtype=np.float32), out)
    lo = float(out.mean()) if len(out) else 0.0
    top = sims[:, 0][ids[:, 0] >= 0] if ids.shape[1] else np.zeros(0)
    hi = float(top.mean()) if len(top) else 1.0
    return lo, max(hi - lo, 1e-6)


def hybrid_knn(
    emb: np.ndarray | RowFile,
    x,
    k: int,
    weight: float = DEFAULT_HYBRID_WEIGHT,
    dense_knn: tuple[np.ndarray, np.ndarray] | None = None,
    lexical_knn_: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    overwrite_dense: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Merge each signal's kNN lists, rescore the union on a common scale, keep the top k.

    `weight` is the dense share (0 = lexical only, 1 = dense only). Scores below chance
    for both signals would be negative; they are floored at a tiny positive value so the
    pair stays an edge (it was a top-k neighbour of one signal). Rows are merged in blocks;
    `overwrite_dense`: the graph is written over dense_knn's arrays when they have its
    shape and types (each block's dense lists are read before its rows are written), which
    saves an [N, k] pair of arrays for a caller that no longer needs the dense lists.
    `emb`: an array, or a `rowfile.RowFile` whose rows are read slab by slab (`candidate_dots`).
    """
    d_ids, d_sims = dense_knn
    l_ids, l_sims = lexical_knn_
    d_scale = signal_scale(d_ids, d_sims, dense=emb, seed=seed)
    l_scale = signal_scale(l_ids, l_sims, lexical=x, seed=seed)
    n = d_ids.shape[0]
    k_eff = max(0, min(k, n - 1))
    if overwrite_dense and d_ids.shape == d_sims.shape == (n, k_eff) and d_ids.dtype == np.int64 and d_sims.dtype == np.float32:
        ids, sims = d_ids, d_sims
    else:
        ids = np.full((n, k_eff), -1, dtype=np.int64)
        sims = np.zeros((n, k_eff), dtype=np.float32)
    # one block's candidates at a time; each block reads a file of embeddings once (`candidate_dots`),
    # so beyond LEXICAL_BLOCK * HYBRID_PASSES rows blocks grow with n and the reads stay linear in n
    block = max(LEXICAL_BLOCK, -(-n // HYBRID_PASSES))
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        cand = np.concatenate([d_ids[r0:r1], l_ids[r0:r1]], axis=1)
        b_ids, b_sims = rescore(cand, k, dense=emb, lexical=x, weight=weight, dense_scale=d_scale, lexical_scale=l_scale,
                                reserve=True, first=r0, n_docs=n)
        ok = b_ids >= 0
        b_sims[ok] = np.maximum(b_sims[ok], np.float32(1e-6))
        ids[r0:r1], sims[r0:r1] = b_ids, b_sims
    params = {
        "weight": weight,
        "dense_scale": [round(v, 6) for v in d_scale],
        "lexical_scale": [round(v, 6) for v in l_scale],
        "candidates": int(d_ids.shape[1] + l_ids.shape[1]),
    }
    return ids, sims, params


def similarity_graph(
    similarity: str,
    emb: np.ndarray | RowFile | None,
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
    lexical=None,
    overwrite_dense: bool = False,
) -> tuple[np.ndarray, np.ndarray, SimilarityInfo]:
    """The traversal graph of one signal: (ids int64 [N, k], sims float32 [N, k], info).

    `dense_knn` (ids, sims) reuses a dense kNN already computed (the runner computes it
    once for dedup); otherwise it is computed here with FAISS. `lexical`: unit-norm sparse
    vectors already built (`lexical_vectors_from_ids` of the token store); `texts` is then
    not read. Its column numbers are compacted in place (`compact_columns`: the dot
    products of its rows do not change). `overwrite_dense`: the hybrid graph may be written over dense_knn's arrays
    (`hybrid_knn`). `emb` may be a `rowfile.RowFile`: the hybrid then reads the rows it needs
    with explicit reads, and no page of the file enters the process's resident set.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity '{similarity}' ({', '.join(SIMILARITIES)})")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"hybrid weight must be between 0 and 1, got {weight}")
    if similarity in ("dense", "hybrid") and dense_knn is None:
        from .neighbors import knn_graph

        vectors = emb.read(0, len(emb)) if isinstance(emb, RowFile) else np.asarray(emb)
        d_ids, d_sims, _ = knn_graph(vectors, k=k, index=index, seed=seed, nprobe=nprobe, progress=progress)
        del vectors
        dense_knn = (d_ids, d_sims)
    if similarity == "dense":
        return dense_knn[0], dense_knn[1], SimilarityInfo("dense", dense_knn[0].shape[1])
    x = lexical if lexical is not None else lexical_vectors(texts, weighting)
    x = compact_columns(x.tocsr().astype(np.float32, copy=False))
    l_ids, l_sims, lp = lexical_knn(x, k, method=lexical_method)
    params = {"weighting": weighting, "lexical": lp}
    if similarity == "lexical":
        return l_ids, l_sims, SimilarityInfo("lexical", l_ids.shape[1], params)
    dense = emb if isinstance(emb, RowFile) else np.asarray(emb)
    ids, sims, hp = hybrid_knn(dense, x, k, weight, dense_knn, (l_ids, l_sims), seed=seed, overwrite_dense=overwrite_dense)
    return ids, sims, SimilarityInfo("hybrid", ids.shape[1], {**params, **hp})
