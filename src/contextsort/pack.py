"""Training-ready contexts: tokenise documents, pack the ordered stream into L-token
contexts, shuffle the contexts, and hand them to the token-format writers.

The ordered corpus is one token stream: each document becomes ``[BOS] tokens EOS``
(BOS optional) and documents follow each other in the traversal order. A context is a
contiguous range of that stream of at most L tokens, padded to L; contexts therefore keep
the order of documents inside them. Two ways to cut the stream:

- ``concat`` (the paper): cut every L tokens. No padding (except the last context), but
  a document that straddles a cut is split across two contexts, and cuts fall anywhere,
  also in the middle of a run of closely related documents.
- ``boundary``: choose the cuts by dynamic programming to minimise
  ``sum(similarity of the links cut) + split_cost * (documents split) + pad_weight *
  sum(padding / L)``. A context ends either at a document boundary (padded to L) or, full,
  inside a document of at least ``min_split`` tokens (default L/4), which is then split;
  shorter documents are never split. Cuts go where the path's link between neighbours is
  weakest (its jumps) as far as the padding they cost allows; a split costs like breaking a
  link of similarity ``split_cost`` (1.0: a document is its own strongest link).

In both modes a document longer than L (with its separators) is split into L-token pieces
(in ``boundary`` mode it may first fill the rest of the context before it).

The contexts are then permuted with a seeded RNG (``shuffle``): the paper warns that
consecutive training contexts must not be related, and the order *inside* a context is
what carries the In-Context Pretraining signal. For each context the offsets at which its
documents (or document pieces) start are kept, so a trainer can build intra-document
attention masks or reset positions.

Everything here works on arrays; `runner.py` calls `tokenize_store` and `pack_contexts`
as the `tokenize` and `pack` stages.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numba as nb
import numpy as np

from .tokenizer import TextTokenizer, token_dtype
from .atomic import commit

PACK_MODES = ("concat", "boundary")
DEFAULT_PAD_WEIGHT = 4.0
DEFAULT_SPLIT_COST = 1.0
ENCODE_AHEAD = 2  # batches being encoded while the oldest finished one is written (tokenize_store)


# --------------------------------------------------------------------------------------
# tokenisation: every document of the store, in store order, to one token file
# --------------------------------------------------------------------------------------


def encode_with_separators(tok: TextTokenizer, texts: Sequence[str], bos: bool, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of `texts` as one array, each text as [BOS] ids EOS; and each text's total length."""
    flat, lens = tok.encode_batch(texts)
    nsep = 1 + int(bos)
    seq = lens + nsep
    ends = np.cumsum(seq)
    starts = ends - seq
    out = np.empty(int(ends[-1]) if len(ends) else 0, dtype=dtype)
    if len(flat):
        # destination of each id: its text's start (+1 after a BOS) + its rank inside the text
        text_first = np.cumsum(lens) - lens
        dest = np.repeat(starts + int(bos) - text_first, lens) + np.arange(len(flat), dtype=np.int64)
        out[dest] = flat
    if bos:
        out[starts] = tok.bos_id
    out[ends - 1] = tok.eos_id
    return out, seq


def fresh_tmp_dir(out_dir: Path) -> Path:
    """An empty sibling `<out_dir>.tmp` to build into (a crashed run's leftovers removed)."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def encoded_batches(store, tok: TextTokenizer, start: int, stop: int, bos: bool, dtype, batch_bytes: int,
                    keep: np.ndarray | None = None, ahead: int = ENCODE_AHEAD) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """(first, end, ids, sequence lengths) of each batch of documents [start, stop), in store
    order. `keep`: bool per document of [start, stop); the others are encoded as '' (only their
    separators). `ahead` batches are encoded by threads while the caller handles the oldest
    finished one (0: encoded in this thread). Batches end where `batch_stop` says, so a range
    that starts on a batch boundary makes the batches one pass makes."""
    def texts_of(a: int, b: int) -> list[str]:
        if keep is None:
            return store.texts(a, b)
        return [t if kept else "" for t, kept in zip(store.texts(a, b), keep[a - start:b - start].tolist())]

    def cuts():
        a = start
        while a < stop:
            b = batch_stop(store, a, stop, batch_bytes)
            yield a, b
            a = b

    if ahead <= 0:
        for a, b in cuts():
            yield (a, b, *encode_with_separators(tok, texts_of(a, b), bos, dtype))
        return
    with ThreadPoolExecutor(ahead) as pool:
        pending: deque = deque()
        for a, b in cuts():
            pending.append((a, b, pool.submit(encode_with_separators, tok, texts_of(a, b), bos, dtype)))
            if len(pending) > ahead:
                a0, b0, fut = pending.popleft()
                yield (a0, b0, *fut.result())
        while pending:
            a0, b0, fut = pending.popleft()
            yield (a0, b0, *fut.result())


TOKENIZE_BATCH_BYTES = 1 << 20  # text encoded at once (read at call time: tests make it small)


def tokenize_store(store, tok: TextTokenizer, out_dir: Path, bos: bool = False, batch_bytes: int | None = None,
                   progress: Callable[[int], None] | None = None, keep: np.ndarray | None = None,
                   mapper: Callable | None = None, workers: int = 1, tokenizer_spec: str | None = None) -> dict:
    """Tokenise every document of `store` (store order) into ``out_dir/stream.bin`` with
    separators; ``doc_off.npy`` [N+1] gives each document's span in it. With `keep`, the
    other documents are not read or tokenized (their span holds only the separators).
    Returns meta.json's content and ``tasks`` (0: one pass here).

    One pass: batches are encoded by ENCODE_AHEAD worker threads while this thread reads
    texts and writes finished batches in store order: a tokenizer that releases the GIL (HF
    `tokenizers`) encodes the next batch while the Python work of the last one (turning its
    encodings into arrays, writing them) runs. The output does not depend on the timing.

    With `mapper` (an engine's map) and `workers` > 1, ranges of documents are tokenized by
    tasks, which build their own tokenizer from `tokenizer_spec` (`get_tokenizer(spec)`, the
    spec `tok` was built from), and joined here (`tokenize_parallel`): the same files, byte
    for byte."""
    if bos and tok.bos_id is None:
        raise ValueError(f"tokenizer {tok.name} has no BOS token: drop --bos")
    batch_bytes = batch_bytes or TOKENIZE_BATCH_BYTES
    out_dir = Path(out_dir)
    tmp = fresh_tmp_dir(out_dir)
    dtype = token_dtype(tok.vocab_size)
    n = len(store)
    t0 = time.perf_counter()
    bounds: list[tuple[int, int]] = []
    if mapper is not None and workers > 1:
        from .tokenize_parallel import range_bounds, tokenize_ranges

        bounds = range_bounds(store, batch_bytes, workers)
    if len(bounds) > 1:
        if tokenizer_spec is None:
            raise ValueError("tokenize_store: tokenizing as tasks needs `tokenizer_spec` (what get_tokenizer built `tok` from)")
        seq_len = tokenize_ranges(store, tokenizer_spec, tmp / "stream.bin", bos, batch_bytes, bounds, keep, dtype,
                                  mapper, progress)
    else:
        bounds = []
        seq_len = np.zeros(n, dtype=np.int64)
        with open(tmp / "stream.bin", "wb") as fh:
            for a, b, ids, seq in encoded_batches(store, tok, 0, n, bos, dtype, batch_bytes, keep):
                fh.write(ids.tobytes())
                seq_len[a:b] = seq
                if progress:
                    progress(b - a)
    doc_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(seq_len, out=doc_off[1:])
    np.save(tmp / "doc_off.npy", doc_off)
    secs = time.perf_counter() - t0
    meta = {
        "tokenizer": tok.name, "tokenizer_fingerprint": tok.fingerprint, "vocab_size": tok.vocab_size,
        "dtype": dtype.name, "eos_id": tok.eos_id, "bos_id": tok.bos_id if bos else None, "bos": bool(bos),
        "documents": n, "tokens": int(doc_off[-1]), "separator_tokens": n * (1 + int(bos)),
        "seconds": round(secs, 3), "tokens_per_second": round(doc_off[-1] / secs) if secs > 0 else None,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    commit(tmp, out_dir)
    return {**meta, "tasks": len(bounds)}


def batch_stop(store, start: int, n: int, batch_bytes: int, max_docs: int = 8192) -> int:
    """End of the batch from `start`: about `batch_bytes` of text (the store knows its offsets)."""
    off = getattr(store, "txt_off", None)
    if off is None:
        return min(n, start + 1024)
    stop = int(np.searchsorted(off, off[start] + batch_bytes, side="left"))
    return int(min(n, start + max_docs, max(stop, start + 1)))


def open_tokens(directory: Path, meta: dict, n_tokens: int) -> np.ndarray:
    """The token file of a stream, memory-mapped (a writing task opens only this, not the offsets)."""
    dtype = np.dtype(meta["dtype"])
    if n_tokens:
        return np.memmap(Path(directory) / "stream.bin", dtype=dtype, mode="r", shape=(n_tokens,))
    return np.zeros(0, dtype=dtype)


@dataclass
class TokenStream:
    """The tokenised documents of a run: ``tokens[doc_off[i]:doc_off[i+1]]`` is document i
    (store order) with its separators."""

    tokens: np.ndarray
    doc_off: np.ndarray
    meta: dict
    directory: Path | None = None  # where it was opened from (tasks reopen it there)

    @classmethod
    def open(cls, directory: Path) -> "TokenStream":
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        doc_off = np.load(directory / "doc_off.npy")
        return cls(open_tokens(directory, meta, int(doc_off[-1])), doc_off, meta, directory)

    @property
    def seq_len(self) -> np.ndarray:
        return np.diff(self.doc_off)


# --------------------------------------------------------------------------------------
# plans: where the ordered stream is cut
# --------------------------------------------------------------------------------------


@dataclass
class ContextPlan:
    """Contexts as ranges of the ordered stream: context c is [start[c], start[c] + length[c])."""

    context_length: int
    start: np.ndarray  # int64 [C]
    length: np.ndarray  # int64 [C], 1..L
    dropped_tokens: int = 0  # stream tokens in no context (the last partial context, with drop_last)

    def __len__(self) -> int:
        return len(self.start)


def plan_concat(total_tokens: int, L: int, drop_last: bool = False) -> ContextPlan:
    """The paper: one stream cut every L tokens."""
    _check_L(L)
    start = np.arange(0, total_tokens, L, dtype=np.int64)
    length = np.minimum(L, total_tokens - start)
    dropped = 0
    if drop_last and len(length) and length[-1] < L:
        dropped = int(length[-1])
        start, length = start[:-1], length[:-1]
    return ContextPlan(L, start, length, dropped)


def _check_L(L: int) -> None:
    if int(L) < 2:
        raise ValueError(f"context length must be at least 2 tokens, got {L}")


@nb.njit(cache=True)
def _mid_states(bound, splittable, L):
    """Positions inside a splittable document where a full context started at a document
    boundary ends (b_j + L), and the further L-steps while still inside that same document.
    Returns (position, document) pairs, unsorted and possibly repeated."""
    n = len(bound) - 1
    T = bound[n]
    pos = np.empty(0, dtype=np.int64)
    cap = 2 * n + 16
    pos = np.empty(cap, dtype=np.int64)
    doc = np.empty(cap, dtype=np.int64)
    m = 0
    d = 0
    for j in range(n):
        p = bound[j] + L
        if p >= T:
            break
        while bound[d + 1] <= p:  # d: the document that holds position p (p grows with j)
            d += 1
        if bound[d] == p or not splittable[d]:
            continue
        while True:
            if m == cap:
                cap *= 2
                pos2 = np.empty(cap, dtype=np.int64)
                doc2 = np.empty(cap, dtype=np.int64)
                pos2[:m] = pos[:m]
                doc2[:m] = doc[:m]
                pos, doc = pos2, doc2
            pos[m] = p
            doc[m] = d
            m += 1
            p += L
            if p >= bound[d + 1]:
                break
    return pos[:m], doc[:m]


@nb.njit(cache=True)
def _boundary_dp(bound, state_pos, state_doc, state_is_bound, splittable, link, L, pad_weight, split_cost):
    """Forward DP over cut positions (sorted `state_pos`): document boundaries and the
    mid-document states of `_mid_states`. From a state at position p a context either ends at
    a document boundary e <= p + L (cost: padding, and the similarity of the link cut at e) or,
    when p + L falls inside a splittable document, fills all L tokens and splits it (cost
    split_cost; from a mid-document state only to go on inside the same document)."""
    S = len(state_pos)
    n = len(bound) - 1
    T = bound[n]
    dp = np.full(S, np.inf)
    back = np.full(S, -1, dtype=np.int64)
    dp[0] = 0.0
    e = 0  # first boundary after p (monotone in p)
    for s in range(S):
        if dp[s] == np.inf:
            continue
        p = state_pos[s]
        while e <= n and bound[e] <= p:
            e += 1
        # (a) end at a document boundary; its state index is found by binary search
        k = e
        while k <= n and bound[k] - p <= L:
            cost = dp[s] + pad_weight * (L - (bound[k] - p)) / L + (link[k - 1] if k < n else 0.0)
            t = np.searchsorted(state_pos, bound[k])
            while not state_is_bound[t]:
                t += 1
            if cost < dp[t]:
                dp[t] = cost
                back[t] = s
            k += 1
        # (b) fill the context and split the document that holds p + L
        q = p + L
        if q < T:
            t = np.searchsorted(state_pos, q)
            while t < S and state_pos[t] == q and state_is_bound[t]:
                t += 1
            if t < S and state_pos[t] == q and not state_is_bound[t]:
                d = state_doc[t]
                if splittable[d] and (state_is_bound[s] or state_doc[s] == d):
                    cost = dp[s] + split_cost
                    if cost < dp[t]:
                        dp[t] = cost
                        back[t] = s
    return dp, back


def plan_boundary(seq_len: np.ndarray, L: int, link_sims: np.ndarray | None = None,
                  pad_weight: float = DEFAULT_PAD_WEIGHT, split_cost: float = DEFAULT_SPLIT_COST,
                  min_split: int | None = None, drop_last: bool = False) -> ContextPlan:
    """Cut the ordered stream where links are weak and short documents stay whole (module doc).

    `seq_len`: tokens of each document in output order, separators included.
    `link_sims`: similarity of documents p and p+1 (len - 1 values); None treats every link
    alike (the plan then only weighs padding against splits).
    A cut between documents costs the similarity of the link it breaks; splitting a document
    costs `split_cost` (1.0: like breaking a link of similarity 1); padding costs
    `pad_weight * padding / L`. Documents shorter than `min_split` tokens (default L // 4) are
    never split; documents longer than L always are.
    """
    _check_L(L)
    seq_len = np.asarray(seq_len, dtype=np.int64)
    n = len(seq_len)
    if n == 0:
        return ContextPlan(L, np.zeros(0, np.int64), np.zeros(0, np.int64))
    if min_split is None:
        min_split = L // 4
    bound = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(seq_len, out=bound[1:])
    splittable = (seq_len >= min_split) | (seq_len > L)
    if link_sims is None:
        link = np.zeros(max(0, n - 1))
    else:
        link = np.asarray(link_sims, dtype=np.float64)
        if len(link) != max(0, n - 1):
            raise ValueError(f"link_sims has {len(link)} values for {n} documents")
    link = np.append(link, 0.0)  # index n-1: the end of the stream (never used as a cut cost)
    mid_pos, mid_doc = _mid_states(bound, splittable, int(L))
    pos = np.concatenate([bound, mid_pos])
    sdoc = np.concatenate([np.arange(n + 1, dtype=np.int64), mid_doc])
    is_bound = np.concatenate([np.ones(n + 1, np.bool_), np.zeros(len(mid_pos), np.bool_)])
    # sort by position, boundaries first at equal positions; drop repeated mid states
    o = np.lexsort((~is_bound, pos))
    pos, sdoc, is_bound = pos[o], sdoc[o], is_bound[o]
    keep = np.ones(len(pos), np.bool_)
    keep[1:] = ~((pos[1:] == pos[:-1]) & (is_bound[1:] == is_bound[:-1]))
    pos, sdoc, is_bound = pos[keep], sdoc[keep], is_bound[keep]
    dp, back = _boundary_dp(bound, pos, sdoc, is_bound, splittable, link, int(L), float(pad_weight), float(split_cost))
    last = len(pos) - 1
    while not (is_bound[last] and pos[last] == bound[-1]):
        last -= 1
    if not np.isfinite(dp[last]):  # pragma: no cover - every state has a way forward
        raise RuntimeError("internal error: boundary packing found no plan")
    starts = []
    s = last
    while s > 0:
        s = int(back[s])
        starts.append(int(pos[s]))
    start = np.asarray(starts[::-1], dtype=np.int64)
    length = np.diff(np.append(start, bound[-1]))
    dropped = 0
    if drop_last and len(length) and length[-1] < L:
        dropped = int(length[-1])
        start, length = start[:-1], length[:-1]
    return ContextPlan(L, start, length, dropped)


def plan_contexts(seq_len: np.ndarray, L: int, mode: str = "concat", link_sims: np.ndarray | None = None,
                  pad_weight: float = DEFAULT_PAD_WEIGHT, split_cost: float = DEFAULT_SPLIT_COST,
                  min_split: int | None = None, drop_last: bool = False) -> ContextPlan:
    if mode == "concat":
        return plan_concat(int(np.sum(seq_len)), L, drop_last)
    if mode == "boundary":
        return plan_boundary(seq_len, L, link_sims, pad_weight, split_cost, min_split, drop_last)
    raise ValueError(f"unknown pack mode {mode!r} (available: {', '.join(PACK_MODES)})")


# --------------------------------------------------------------------------------------
# what each context holds
# --------------------------------------------------------------------------------------


@dataclass
class ContextDocs:
    """Ragged per-context document pieces (contexts in plan order).

    Context c holds pieces ptr[c]:ptr[c+1]; piece k is tokens [src_from[k], src_from[k] +
    length[k]) of output document doc[k] (its position in the order), placed at offset[k]
    inside the context. offsets start at 0 and grow.
    """

    ptr: np.ndarray  # int64 [C+1]
    doc: np.ndarray  # int64 [P] position of the document in the output order
    offset: np.ndarray  # int64 [P] where the piece starts inside its context
    src_from: np.ndarray  # int64 [P] where the piece starts inside its document
    length: np.ndarray  # int64 [P]


def context_docs(doc_start: np.ndarray, plan: ContextPlan) -> ContextDocs:
    """`doc_start` [n+1]: stream offset of each ordered document (cumulative lengths)."""
    s = plan.start
    e = plan.start + plan.length
    d0 = np.searchsorted(doc_start, s, side="right") - 1
    d1 = np.searchsorted(doc_start, e - 1, side="right") - 1
    cnt = d1 - d0 + 1
    ptr = np.zeros(len(s) + 1, dtype=np.int64)
    np.cumsum(cnt, out=ptr[1:])
    rep_s = np.repeat(s, cnt)
    rep_e = np.repeat(e, cnt)
    doc = np.repeat(d0, cnt) + (np.arange(ptr[-1], dtype=np.int64) - np.repeat(ptr[:-1], cnt))
    lo = np.maximum(doc_start[doc], rep_s)
    hi = np.minimum(doc_start[doc + 1], rep_e)
    return ContextDocs(ptr, doc, lo - rep_s, lo - doc_start[doc], hi - lo)


# --------------------------------------------------------------------------------------
# measures of a packing
# --------------------------------------------------------------------------------------


def pack_stats(plan: ContextPlan, cd: ContextDocs, seq_len: np.ndarray, link_sims: np.ndarray | None = None,
               emb: np.ndarray | None = None, order: np.ndarray | None = None, perm: np.ndarray | None = None,
               seed: int = 0, max_pairs: int = 50_000) -> dict:
    """Counts (tokens, padding, splits) and, given similarities/embeddings, coherence measures.

    - within_context_adjacent_similarity: mean similarity of consecutive documents that share
      a context (the links a context keeps).
    - cut_similarity: mean similarity of the links that fall on a context boundary.
    - within_context_pairwise_similarity: mean cosine of all document pairs sharing a context.
    - across_contexts: mean cosine of consecutive contexts (mean document embedding), in the
      written (shuffled) order, in plan order, and for random pairs of contexts.
    - short_documents_split: split documents that would have fit in one context (<= L tokens).
    """
    L = plan.context_length
    C = len(plan)
    n = len(seq_len)
    real = int(plan.length.sum())
    per_doc = np.bincount(cd.doc, minlength=n) if n else np.zeros(0, np.int64)
    split = per_doc > 1
    long_doc = seq_len > L
    out = {
        "contexts": C,
        "context_tokens": real,
        "padding_tokens": int(C * L - real),
        "waste": float((C * L - real) / (C * L)) if C else 0.0,
        "dropped_tokens": int(plan.dropped_tokens),
        "documents": int(n),
        "documents_split": int(split.sum()),
        "documents_split_share": float(split.mean()) if n else 0.0,
        "short_documents_split": int((split & ~long_doc).sum()),
        "long_documents": int(long_doc.sum()),
        "documents_per_context": float(len(cd.doc) / C) if C else 0.0,
    }
    if link_sims is not None and n > 1:
        # link p -> p+1 is inside a context when some context holds both (consecutive pieces)
        same = np.zeros(n - 1, dtype=np.bool_)
        ctx = np.repeat(np.arange(C), np.diff(cd.ptr))
        inside = (cd.doc[1:] == cd.doc[:-1] + 1) & (ctx[1:] == ctx[:-1])
        same[cd.doc[:-1][inside]] = True
        ls = np.asarray(link_sims, dtype=np.float64)
        out["within_context_adjacent_similarity"] = float(ls[same].mean()) if same.any() else 0.0
        out["cut_similarity"] = float(ls[~same].mean()) if (~same).any() else 0.0
        out["links_kept_share"] = float(same.mean())
        out["all_links_similarity"] = float(ls.mean())
    if emb is not None and order is not None and C:
        rows = np.asarray(order, dtype=np.int64)[cd.doc]
        cnt = np.diff(cd.ptr).astype(np.float64)
        # pairwise similarity inside each context, from the norm of its embedding sum
        pair_sum, n_multi = 0.0, 0
        for a in range(0, C, 8192):
            ids = np.arange(a, min(C, a + 8192), dtype=np.int64)
            sums = _context_sums(emb, rows, cd.ptr, ids)
            sq = np.einsum("ij,ij->i", sums, sums).astype(np.float64)
            c = cnt[ids]
            multi = c > 1
            pair_sum += float(((sq[multi] - c[multi]) / (c[multi] * (c[multi] - 1))).sum())
            n_multi += int(multi.sum())
        out["within_context_pairwise_similarity"] = pair_sum / n_multi if n_multi else 0.0
        # consecutive contexts (mean document embedding), on at most `max_pairs` pairs
        rng = np.random.default_rng(seed + 7)
        written = perm if perm is not None else np.arange(C)
        out["across_contexts"] = {
            "written": _consecutive_similarity(emb, rows, cd.ptr, written, rng, max_pairs),
            "unshuffled": _consecutive_similarity(emb, rows, cd.ptr, np.arange(C), rng, max_pairs),
            "random": float(np.mean([_consecutive_similarity(emb, rows, cd.ptr, rng.permutation(C), rng, max_pairs)
                                     for _ in range(3)])),
        }
    return out


@nb.njit(cache=True)
def _context_sums_nb(emb, rows, ptr, ids, out):
    for r in range(len(ids)):
        c = ids[r]
        for k in range(ptr[c], ptr[c + 1]):
            row = rows[k]
            for d in range(emb.shape[1]):
                out[r, d] += emb[row, d]


def _context_sums(emb, rows, ptr, ids) -> np.ndarray:
    """Sum of the document embeddings of each context in `ids` (float32 [len(ids), dim])."""
    out = np.zeros((len(ids), emb.shape[1]), dtype=np.float32)
    _context_sums_nb(np.asarray(emb), rows, ptr, np.asarray(ids, dtype=np.int64), out)
    return out


def _consecutive_similarity(emb, rows, ptr, seq, rng, max_pairs: int) -> float:
    """Mean cosine of the mean embeddings of contexts seq[i] and seq[i+1] (a sample of i)."""
    seq = np.asarray(seq, dtype=np.int64)
    if len(seq) < 2:
        return 0.0
    i = np.arange(len(seq) - 1)
    if len(i) > max_pairs:
        i = np.sort(rng.choice(i, size=max_pairs, replace=False))
    a = _context_sums(emb, rows, ptr, seq[i])
    b = _context_sums(emb, rows, ptr, seq[i + 1])
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float(np.einsum("ij,ij->i", a, b).mean())


# --------------------------------------------------------------------------------------
# gathering and writing
# --------------------------------------------------------------------------------------


@nb.njit(cache=True)
def _gather(tokens, src_off, ptr, offset, length, ctx_ids, pad, out):
    """out[r] = context ctx_ids[r] (its pieces copied from tokens), padded with `pad`."""
    L = out.shape[1]
    for r in range(len(ctx_ids)):
        c = ctx_ids[r]
        filled = 0
        for k in range(ptr[c], ptr[c + 1]):
            o = offset[k]
            s = src_off[k]
            for t in range(length[k]):
                out[r, o + t] = tokens[s + t]
            filled = o + length[k]
        for t in range(filled, L):
            out[r, t] = pad


def shuffle_permutation(n_contexts: int, seed: int, shuffle: bool = True) -> np.ndarray:
    """Written position -> plan context. Seeded; identity when not shuffling."""
    if not shuffle:
        return np.arange(n_contexts, dtype=np.int64)
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(n_contexts).astype(np.int64)


@dataclass
class ContextBatch:
    """A batch of written contexts, in written order, ready for a format writer."""

    tokens: np.ndarray  # [B, L] token dtype, padded
    lengths: np.ndarray  # int32 [B] real tokens (the rest is padding)
    context: np.ndarray  # int64 [B] index in plan (unshuffled) order
    doc_offsets_ptr: np.ndarray  # int64 [B+1]
    doc_offsets: np.ndarray  # int32 where each document (piece) starts inside its context
    doc_positions: np.ndarray  # int64 position of each document in the order (ordered.jsonl line)

    def __len__(self) -> int:
        return len(self.lengths)

    def slice(self, a: int, b: int) -> "ContextBatch":
        """Contexts [a, b) of this batch."""
        pa, pb = int(self.doc_offsets_ptr[a]), int(self.doc_offsets_ptr[b])
        return ContextBatch(self.tokens[a:b], self.lengths[a:b], self.context[a:b],
                            self.doc_offsets_ptr[a:b + 1] - pa, self.doc_offsets[pa:pb], self.doc_positions[pa:pb])


BATCH_CONTEXTS = 256  # contexts gathered at once; also where Parquet row groups end


@dataclass
class ContextSpec:
    """Written contexts [first, first + len) as a task needs them to gather their tokens:
    where each document piece comes from in the token stream and lands in its context."""

    first: int  # written position of the first context
    context: np.ndarray  # int64 [B] index in plan order
    lengths: np.ndarray  # int32 [B] real tokens
    ptr: np.ndarray  # int64 [B+1] pieces of each context
    src_off: np.ndarray  # int64 [P] where the piece starts in the token stream
    offset: np.ndarray  # int64 [P] where it starts inside its context
    length: np.ndarray  # int64 [P] its tokens
    doc_positions: np.ndarray  # int64 [P] its document's position in the order

    def __len__(self) -> int:
        return len(self.context)


def context_spec(doc_off: np.ndarray, order: np.ndarray, plan: ContextPlan, cd: ContextDocs, perm: np.ndarray,
                 a: int, b: int) -> ContextSpec:
    """The spec of written contexts [a, b) (`perm[a:b]` in plan order); `doc_off`: the token stream's offsets."""
    ids = np.asarray(perm[a:b], dtype=np.int64)
    cnt = cd.ptr[ids + 1] - cd.ptr[ids]
    ptr = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(cnt, out=ptr[1:])
    sel = np.repeat(cd.ptr[ids], cnt) + (np.arange(ptr[-1], dtype=np.int64) - np.repeat(ptr[:-1], cnt))
    doc = cd.doc[sel]
    src_off = doc_off[np.asarray(order, dtype=np.int64)[doc]] + cd.src_from[sel]
    return ContextSpec(int(a), ids.copy(), plan.length[ids].astype(np.int32), ptr, src_off, cd.offset[sel],
                       cd.length[sel], doc)


def gather_batches(tokens: np.ndarray, spec: ContextSpec, context_length: int, pad_id: int, dtype,
                   batch_contexts: int | None = None):
    """ContextBatches of the spec's contexts, cut on the global grid of `batch_contexts` written
    positions (default BATCH_CONTEXTS, read at call time), so a task that writes a range makes
    the same batches as one pass over all."""
    batch_contexts = batch_contexts or BATCH_CONTEXTS
    dtype = np.dtype(dtype)
    tokens = np.asarray(tokens)
    end = spec.first + len(spec)
    pos = spec.first
    while pos < end:
        stop = min(end, (pos // batch_contexts + 1) * batch_contexts)
        i, j = pos - spec.first, stop - spec.first
        buf = np.empty((j - i, int(context_length)), dtype=dtype)
        _gather(tokens, spec.src_off, spec.ptr, spec.offset, spec.length, np.arange(i, j, dtype=np.int64),
                dtype.type(pad_id), buf)
        p0, p1 = int(spec.ptr[i]), int(spec.ptr[j])
        yield ContextBatch(buf, spec.lengths[i:j], spec.context[i:j], spec.ptr[i:j + 1] - p0,
                           spec.offset[p0:p1].astype(np.int32), spec.doc_positions[p0:p1])
        pos = stop


def iter_batches(stream: TokenStream, order: np.ndarray, plan: ContextPlan, cd: ContextDocs, perm: np.ndarray,
                 pad_id: int, dtype, batch_contexts: int | None = None):
    """Yield ContextBatch objects covering perm (written order)."""
    spec = context_spec(stream.doc_off, order, plan, cd, perm, 0, len(perm))
    yield from gather_batches(stream.tokens, spec, plan.context_length, pad_id, dtype, batch_contexts)


# --------------------------------------------------------------------------------------
# the whole stage
# --------------------------------------------------------------------------------------


def parse_size(s: str | int | None) -> int | None:
    """'512MB', '2G', '1.5GiB', '100000' -> bytes (None/0/'0' -> None: no sharding)."""
    if s is None:
        return None
    if isinstance(s, (int, np.integer)):
        return int(s) or None
    t = str(s).strip().upper().replace(" ", "")
    units = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "M": 10**6, "MB": 10**6, "MIB": 2**20,
             "G": 10**9, "GB": 10**9, "GIB": 2**30, "T": 10**12, "TB": 10**12, "TIB": 2**40}
    num = t.rstrip("KMGTIB")
    unit = t[len(num):]
    if unit not in units or not num:
        raise ValueError(f"cannot read size {s!r} (e.g. 500MB, 2GB, 1GiB)")
    v = int(float(num) * units[unit])
    return v or None


def pack_contexts(stream: TokenStream, order: np.ndarray, out_dir: Path, *, context_length: int, mode: str = "concat",
                  formats: Sequence[str] = ("megatron", "parquet"), link_sims: np.ndarray | None = None,
                  emb: np.ndarray | None = None, pad_weight: float = DEFAULT_PAD_WEIGHT,
                  split_cost: float = DEFAULT_SPLIT_COST, min_split: int | None = None, drop_last: bool = False,
                  shuffle: bool = True, seed: int = 0, pad_id: int | None = None, shard_bytes: int | None = None,
                  tokenizer_info: dict | None = None, progress: Callable[[int], None] | None = None,
                  mapper: Callable | None = None, workers: int = 1, contexts_per_task: int | None = None) -> dict:
    """Plan, shuffle and write the contexts of `order` into `out_dir` (replaced atomically).
    Returns the content of ``out_dir/pack.json``.

    With `mapper` (an engine's map) and `workers` > 1, ranges of contexts are written by tasks
    and joined here (`formats.contexts_parallel`); the files are the same byte for byte."""
    from .formats.contexts import get_context_writer, shard_layout

    t0 = time.perf_counter()
    L = int(context_length)
    order = np.asarray(order, dtype=np.int64)
    seq_len = stream.seq_len[order]
    doc_start = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(seq_len, out=doc_start[1:])
    if mode == "boundary" and link_sims is None and emb is not None:
        from .metrics import adjacent_similarities

        link_sims = adjacent_similarities(np.asarray(emb), order)
    plan = plan_contexts(seq_len, L, mode, link_sims, pad_weight=pad_weight, split_cost=split_cost,
                         min_split=min_split, drop_last=drop_last)
    cd = context_docs(doc_start, plan)
    perm = shuffle_permutation(len(plan), seed, shuffle)
    if link_sims is None and emb is not None:
        from .metrics import adjacent_similarities

        link_sims = adjacent_similarities(np.asarray(emb), order)
    stats = pack_stats(plan, cd, seq_len, link_sims, emb, order, perm, seed)
    t_plan = time.perf_counter() - t0

    meta_tok = dict(stream.meta)
    vocab = int(meta_tok["vocab_size"])
    dtype = token_dtype(vocab)
    if pad_id is None:
        pad_id = (tokenizer_info or {}).get("pad_id")
    if pad_id is None:
        pad_id = int(meta_tok["eos_id"])
    if not 0 <= pad_id < (1 << (8 * dtype.itemsize)):
        raise ValueError(f"pad id {pad_id} does not fit {dtype.name}")

    out_dir = Path(out_dir)
    tmp = fresh_tmp_dir(out_dir)
    formats = list(dict.fromkeys(formats))
    layout = shard_layout(len(plan), L, dtype, shard_bytes)
    t1 = time.perf_counter()
    tasks = 0
    if mapper is not None and workers > 1 and len(plan) and stream.directory is not None:
        from .formats.contexts_parallel import write_contexts_parallel

        files, tasks = write_contexts_parallel(
            tmp, str(stream.directory), len(stream.tokens),
            lambda a, b: context_spec(stream.doc_off, order, plan, cd, perm, a, b), formats, L, dtype, pad_id, layout,
            vocab, mapper, workers, contexts_per_task, progress)
    else:
        writers = [get_context_writer(f, tmp, L, dtype, layout, vocab_size=vocab) for f in formats]
        for batch in iter_batches(stream, order, plan, cd, perm, pad_id, dtype):
            for w in writers:
                w.write(batch)
            if progress:
                progress(len(batch))
        files = {f: w.close() for f, w in zip(formats, writers)}
    t_write = time.perf_counter() - t1

    stream_tokens = int(seq_len.sum())
    info = {
        "format_version": 1,
        "context_length": L,
        "mode": mode,
        "boundary": {"pad_weight": pad_weight, "split_cost": split_cost,
                     "min_split": min_split if min_split is not None else L // 4} if mode == "boundary" else None,
        "drop_last": bool(drop_last),
        "shuffled": bool(shuffle),
        "seed": int(seed),
        "dtype": dtype.name,
        "pad_id": int(pad_id),
        "tokenizer": {k: meta_tok.get(k) for k in ("tokenizer", "tokenizer_fingerprint", "vocab_size", "eos_id", "bos_id", "bos")},
        "counts": {
            "documents": int(len(order)),
            "document_tokens": stream_tokens - int(len(order)) * (1 + int(bool(meta_tok.get("bos")))),
            "separator_tokens": int(len(order)) * (1 + int(bool(meta_tok.get("bos")))),
            "stream_tokens": stream_tokens,
            **{k: stats[k] for k in ("contexts", "context_tokens", "padding_tokens", "dropped_tokens")},
        },
        "metrics": {k: v for k, v in stats.items() if k not in ("contexts", "context_tokens", "padding_tokens", "dropped_tokens", "documents")},
        "shards": layout.n_shards,
        "contexts_per_shard": layout.per_shard,
        "files": files,
        "seconds": {"plan": round(t_plan, 3), "write": round(t_write, 3)},
        "write_tasks": tasks,  # 0: written in one pass
    }
    c = info["counts"]
    c["adds_up"] = c["context_tokens"] + c["dropped_tokens"] == c["stream_tokens"]
    if not c["adds_up"]:
        raise RuntimeError(f"internal error: packed {c['context_tokens']} + dropped {c['dropped_tokens']} != stream {c['stream_tokens']} tokens")
    # plan/order of the contexts, for anyone who wants to trace a context back
    np.save(tmp / "context_order.npy", perm)
    (tmp / "pack.json").write_text(json.dumps(info, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    commit(tmp, out_dir)
    return info
