"""Lexical and hybrid similarity: rare terms win, both signals' best links survive, determinism."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from contextsort import similarity as S
from contextsort.config import Config
from contextsort.corpus import CorpusReader, Record
from contextsort.neighbors import knn_graph

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="module")
def bbc_subset(bbc_path):
    """Every 4th BBC article (about 556): real text with topic labels, small enough to be quick."""
    recs = [r for r in CorpusReader([bbc_path], "text", "id", "label") if isinstance(r, Record)]
    recs = recs[::4]
    return [r.text for r in recs], np.asarray([str(r.fields.get("label")) for r in recs]), [str(r.id) for r in recs]


@pytest.fixture(scope="module")
def bbc_signals(bbc_subset):
    from contextsort.embed import get_embedder

    texts, labels, _ = bbc_subset
    emb = get_embedder("wordllama").encode(texts)
    x = S.lexical_vectors(texts)
    d_ids, d_sims, _ = knn_graph(emb, 10, index="flat")
    l_ids, l_sims = S.lexical_knn_exact(x, 10)
    return emb, x, (d_ids, d_sims), (l_ids, l_sims)


def _corpus_rare_vs_common():
    # 40 background documents all made of the same common words: those words get a low idf.
    common = "people said the report this year was about time market group government"
    docs = [f"{common} number {i} day" for i in range(40)]
    query = "people said the report on chromodynamics and gluon lattice simulations"
    rare = "chromodynamics gluon lattice physics"  # shares 3 rare terms with the query
    plain = "people said the report people said the report year time market"  # shares only common words
    return docs + [query, rare, plain], len(docs), len(docs) + 1, len(docs) + 2


@pytest.mark.parametrize("weighting", ["tfidf", "bm25"])
@pytest.mark.parametrize("method", ["exact", "pruned"])
def test_lexical_ranks_rare_terms_above_common_words(weighting, method):
    texts, q, rare, plain = _corpus_rare_vs_common()
    x = S.lexical_vectors(texts, weighting)
    ids, sims, _ = S.lexical_knn(x, len(texts) - 1, method=method)
    row = list(ids[q])
    assert rare in row
    assert plain in row  # it does share words, so it is a (weaker) neighbour
    assert row.index(rare) < row.index(plain)
    assert row[0] == rare
    # and the sims row is sorted, decreasing
    assert np.all(np.diff(sims[q][ids[q] >= 0]) <= 0)


@pytest.mark.parametrize("threads", [1, 2])  # rows are scored in parallel chunks: same result
def test_exact_lexical_knn_matches_brute_force(bbc_signals, threads):
    import numba

    _, x, _, _ = bbc_signals
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        ids, sims = S.lexical_knn_exact(x, 5)
    finally:
        numba.set_num_threads(before)
    full = (x @ x.T).toarray()
    np.fill_diagonal(full, -np.inf)
    best = np.sort(full, axis=1)[:, ::-1][:, :5]
    np.testing.assert_allclose(sims, best, rtol=1e-5, atol=1e-6)
    got = full[np.arange(len(ids))[:, None], ids]
    np.testing.assert_allclose(got, sims, rtol=1e-5, atol=1e-6)


def test_pruned_lexical_recall(bbc_signals):
    """The approximate lexical kNN finds most exact neighbours (benchmark: 0.93 on the whole sample)."""
    _, x, _, (l_ids, _) = bbc_signals
    p_ids, p_sims, info = S.lexical_knn(x, 10, method="pruned")
    assert info["method"] == "pruned"
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(l_ids, p_ids)])
    assert recall >= 0.85
    assert np.all(np.diff(p_sims, axis=1) <= 1e-7)


@pytest.mark.parametrize("weight", [0.0, 0.2, 0.9, 1.0])
def test_hybrid_contains_each_signals_top_neighbour(bbc_signals, weight):
    emb, x, dense, lex = bbc_signals
    h_ids, h_sims, _ = S.hybrid_knn(emb, x, 10, weight, dense, lex)
    (d_ids, d_sims), (l_ids, l_sims) = dense, lex
    n = len(h_ids)
    for i in range(n):
        row = set(h_ids[i].tolist())
        # the top neighbour, up to exact ties of its similarity
        if d_ids[i, 0] >= 0 and d_sims[i, 0] - d_sims[i, 1] > 1e-6:
            assert d_ids[i, 0] in row, i
        if l_ids[i, 0] >= 0 and l_sims[i, 0] - l_sims[i, 1] > 1e-6:
            assert l_ids[i, 0] in row, i
    # one similarity per edge, sorted, no self loops, no repeats
    assert h_ids.shape == (n, 10) and h_sims.dtype == np.float32 and h_ids.dtype == np.int64
    assert not np.any(h_ids == np.arange(n)[:, None])
    assert all(len(set(r[r >= 0].tolist())) == (r >= 0).sum() for r in h_ids)
    assert np.all(np.diff(h_sims, axis=1) <= 1e-6)
    assert np.all(h_sims[h_ids >= 0] > 0)


def test_hybrid_topic_agreement_not_below_its_signals(bbc_subset, bbc_signals):
    """The hybrid graph's top neighbour shares the topic at least about as often as each signal's."""
    _, labels, _ = bbc_subset
    emb, x, dense, lex = bbc_signals
    h_ids, _, _ = S.hybrid_knn(emb, x, 10, 0.2, dense, lex)
    agree = lambda ids: float(np.mean(labels[ids[:, 0]] == labels))  # noqa: E731
    assert agree(h_ids) >= min(agree(dense[0]), agree(lex[0])) - 0.01
    assert agree(h_ids) > 0.8


@pytest.mark.parametrize("similarity", ["lexical", "hybrid"])
def test_similarity_graph_is_deterministic(bbc_subset, bbc_signals, similarity):
    texts, _, _ = bbc_subset
    emb = bbc_signals[0]
    a = S.similarity_graph(similarity, emb, iter(texts), 10)
    b = S.similarity_graph(similarity, emb, list(texts), 10)
    assert np.array_equal(a[0], b[0])
    assert a[1].tobytes() == b[1].tobytes()
    p1 = S.similarity_graph("lexical", None, texts, 10, lexical_method="pruned")
    p2 = S.similarity_graph("lexical", None, texts, 10, lexical_method="pruned")
    assert np.array_equal(p1[0], p2[0]) and p1[1].tobytes() == p2[1].tobytes()


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown similarity"):
        S.similarity_graph("sparse", None, ["a b"], 2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        S.similarity_graph("hybrid", np.eye(2, dtype=np.float32), ["a b", "c d"], 1, weight=1.5)
    with pytest.raises(ValueError, match="weighting"):
        S.lexical_vectors(["a b"], "bm99")
    with pytest.raises(ValueError, match="lexical kNN method"):
        S.lexical_knn(S.lexical_vectors(["alpha beta", "beta gamma"]), 1, method="ann")


def test_cli_rejects_bad_hybrid_weight(tmp_path, capsys):
    from contextsort.cli import main

    p = tmp_path / "in.jsonl"
    p.write_text(json.dumps({"id": 1, "text": "hello world"}) + "\n")
    assert main(["run", str(p), "-o", str(tmp_path / "run"), "--similarity", "hybrid", "--hybrid-weight", "2", "-q"]) == 2
    assert "--hybrid-weight" in capsys.readouterr().err


# --- the tfidf embedder -------------------------------------------------------


def test_tfidf_embedder(bbc_subset):
    from contextsort.embed import Embedder, get_embedder

    texts, labels, _ = bbc_subset
    e = get_embedder("tfidf:64")
    assert isinstance(e, Embedder) and e.dim == 64
    e.fit(iter(texts))
    v = e.encode(texts)
    assert v.shape == (len(texts), 64) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    v2 = get_embedder("tfidf:64").fit(texts).encode(texts[:50])
    np.testing.assert_allclose(v[:50], v2, atol=1e-6)  # deterministic, and batch-independent once fitted
    ids, _, _ = knn_graph(v, 1, index="flat")
    assert np.mean(labels[ids[:, 0]] == labels) > 0.8  # topic survives the reduction
    texts2, q, rare, plain = _corpus_rare_vs_common()
    w = get_embedder("tfidf:16").fit(texts2).encode(texts2)
    assert w[q] @ w[rare] > w[q] @ w[plain]


def test_tfidf_embedder_bad_dim():
    from contextsort.embed import EmbedderUnavailable, get_embedder

    with pytest.raises(EmbedderUnavailable, match="dimension"):
        get_embedder("tfidf:abc")


# --- the pipeline -------------------------------------------------------------


def _jsonl(path: Path, texts, labels, ids) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for t, lab, i in zip(texts, labels, ids):
            fh.write(json.dumps({"id": i, "text": t, "label": lab}) + "\n")
    return path


def test_runner_hybrid_and_lexical(tmp_path, bbc_subset):
    """Each signal gives a valid order; dedup is the same under every signal (dense cosine); reruns are identical."""
    import contextsort

    texts, labels, ids = bbc_subset
    n = 200
    src = _jsonl(tmp_path / "bbc.jsonl", texts[:n] + texts[:3], list(labels[:n]) + list(labels[:3]), ids[:n] + ["d1", "d2", "d3"])
    dup_of, orders = {}, {}
    for sim in ("dense", "lexical", "hybrid"):
        cfg = Config()
        cfg.output.formats = ["jsonl"]
        cfg.similarity.similarity = sim
        res = contextsort.run([src], tmp_path / sim, cfg)
        assert res.counts["adds_up"]
        assert res.counts["duplicates"] >= 3  # the planted copies
        kept = np.flatnonzero(np.load(tmp_path / sim / "dup_of.npy") < 0)
        assert np.array_equal(np.sort(res.order), kept)
        dup_of[sim] = np.load(tmp_path / sim / "dup_of.npy")
        orders[sim] = res.order
        assert res.manifest["stages"]["neighbors"]["similarity"] == sim
        if sim != "dense":
            assert not np.array_equal(np.load(tmp_path / sim / "knn_sims.npy"), np.load(tmp_path / sim / "dedup_sims.npy"))
        # rerun from scratch in another directory: identical order
        again = contextsort.run([src], tmp_path / (sim + "2"), cfg)
        assert np.array_equal(again.order, res.order)
    assert np.array_equal(dup_of["dense"], dup_of["lexical"])
    assert np.array_equal(dup_of["dense"], dup_of["hybrid"])
    assert not np.array_equal(orders["dense"], orders["lexical"])
    # changing only the similarity recomputes from neighbors on, not the embedding
    cfg = Config()
    cfg.output.formats = ["jsonl"]
    cfg.similarity.similarity = "lexical"
    res = contextsort.run([src], tmp_path / "hybrid", cfg)
    assert "embed" in res.skipped and "neighbors" not in res.skipped
    assert np.array_equal(res.order, orders["lexical"])


def test_runner_tfidf_embedder(tmp_path, bbc_subset):
    import contextsort

    texts, labels, ids = bbc_subset
    src = _jsonl(tmp_path / "bbc.jsonl", texts[:150], labels[:150], ids[:150])
    cfg = Config()
    cfg.output.formats = ["jsonl"]
    cfg.embed.embedder = "tfidf:32"
    cfg.similarity.similarity = "dense"
    res = contextsort.run([src], tmp_path / "run", cfg)
    assert res.counts["adds_up"]
    assert res.manifest["stages"]["embed"]["embedder"] == "tfidf:32"
    assert res.metrics["label_agreement"]["ordered"] > res.metrics["label_agreement"]["random"]


# --- the Jargon File (optional: Debian dict-jargon) ---------------------------


def test_jargon_cross_references_are_lexical_neighbours():
    from jargon import JargonUnavailable, read_jargon

    try:
        jar = read_jargon()
    except JargonUnavailable as e:
        pytest.skip(str(e))
    assert len(jar.texts) > 2000
    links = jar.linked()
    assert len(links) > 3000
    x = S.lexical_vectors(jar.texts)
    ids, _ = S.lexical_knn_exact(x, 1)
    top_linked = np.mean([(min(i, j), max(i, j)) in links for i, j in enumerate(ids[:, 0].tolist())])
    rng = np.random.default_rng(0)
    assert top_linked > 0.4  # measured 0.62
    assert jar.link_rate(rng.permutation(len(jar.texts))) < 0.01


def test_documents_without_terms_have_no_lexical_edges():
    """Only stop words / one-letter tokens: no lexical neighbour, and nobody's neighbour."""
    texts = ["the a of", "alpha beta gamma", "beta gamma delta", "gamma delta alpha"]
    ids, sims, _ = S.similarity_graph("lexical", None, texts, 5)
    assert ids.shape == (4, 3)
    assert np.all(ids[0] == -1) and np.all(sims[0] == 0)
    assert not np.any(ids[1:] == 0)
    assert np.all(ids[1:, :2] >= 0)  # the others all share a term with each other
    assert np.all(ids[1:, 2] == -1)  # and not with document 0: no filler edge


def reference_prune(x, top_terms, max_df):
    """prune_rows' rule row by row in plain Python: drop terms in more than max_df documents,
    keep the top_terms heaviest (at the threshold weight, the first columns while room is left)."""
    df = np.bincount(x.indices, minlength=x.shape[1])
    rows = []
    for i in range(x.shape[0]):
        cols, vals = x.indices[x.indptr[i]:x.indptr[i + 1]], x.data[x.indptr[i]:x.indptr[i + 1]].copy()
        vals[df[cols] > max_df] = 0.0
        if len(vals) > top_terms:
            thr = np.sort(vals)[len(vals) - top_terms]
            room = top_terms - int((vals > thr).sum())
            for e in range(len(vals)):
                if vals[e] < thr or (vals[e] == thr and room <= 0):
                    vals[e] = 0.0
                elif vals[e] == thr:
                    room -= 1
        rows.append({int(c): float(v) for c, v in zip(cols, vals) if v != 0.0})
    return rows


def test_prune_rows_keeps_each_rows_heaviest_rare_terms(bbc_signals):
    x = bbc_signals[1]
    y = S.prune_rows(x, top_terms=8, max_df=20)
    got = [dict(zip(y.indices[y.indptr[i]:y.indptr[i + 1]].tolist(), y.data[y.indptr[i]:y.indptr[i + 1]].tolist()))
           for i in range(y.shape[0])]
    assert got == reference_prune(x, 8, 20)
    assert max(np.diff(y.indptr)) <= 8 and y.nnz < x.nnz


def test_prune_rows_with_ties_zeros_and_negative_weights():
    """Rows of small integer weights (ties at the threshold), explicit zeros and, in some
    rows, negative weights (counted through the sort, not the nonzero count): the same rule."""
    import scipy.sparse as sp

    rng = np.random.default_rng(5)
    dense = rng.integers(0, 4, size=(200, 90)).astype(np.float32)
    dense[rng.random(dense.shape) > 0.5] = 0.0
    dense[::7] *= np.where(rng.random((1, 90)) > 0.8, -1.0, 1.0).astype(np.float32)  # negatives in every 7th row
    x = sp.csr_matrix(dense)
    x.data[::11] = 0.0  # explicit zeros
    for top, max_df in ((8, 60), (30, 200), (100, 200)):
        y = S.prune_rows(x, top_terms=top, max_df=max_df)
        got = [dict(zip(y.indices[y.indptr[i]:y.indptr[i + 1]].tolist(), y.data[y.indptr[i]:y.indptr[i + 1]].tolist()))
               for i in range(y.shape[0])]
        assert got == reference_prune(x, top, max_df)
    assert (x.data < 0).any() and (x.data == 0).any()


def test_drop_common_terms_in_place_equals_copy_and_frees_the_tail():
    texts = ["the cat sat", "the dog sat", "the bird flew", "a cat and a dog"]
    counts = S.term_counts(texts, stop_words=None)
    want = S.drop_common_terms(counts, max_df=0.5)
    assert counts.nnz > want.nnz  # the copy left its input alone
    got = S.drop_common_terms(counts, max_df=0.5, copy=False)
    assert got is counts
    assert (got != want).nnz == 0 and np.array_equal(got.indptr, want.indptr)
    assert len(got.indices) == len(got.data) == got.nnz == want.nnz  # arrays cut to the kept entries


def test_blocks_give_the_same_graph_as_one_block(bbc_signals, monkeypatch):
    """Lexical candidates and hybrid rescoring run over row blocks; the block size must not
    change a bit of the result, and the hybrid graph may be written over the dense lists."""
    emb, x = bbc_signals[0], bbc_signals[1]
    d_ids, d_sims, _ = knn_graph(emb, k=10, index="flat")
    l_ids, l_sims, _ = S.lexical_knn(x, 10, method="pruned")
    h_ids, h_sims, _ = S.hybrid_knn(emb, x, 10, 0.2, (d_ids, d_sims), (l_ids, l_sims))
    monkeypatch.setattr(S, "LEXICAL_BLOCK", 37)
    l2_ids, l2_sims, _ = S.lexical_knn(x, 10, method="pruned")
    assert np.array_equal(l_ids, l2_ids) and np.array_equal(l_sims, l2_sims)
    dense = (d_ids.copy(), d_sims.copy())
    h2_ids, h2_sims, _ = S.hybrid_knn(emb, x, 10, 0.2, dense, (l2_ids, l2_sims), overwrite_dense=True)
    assert h2_ids is dense[0] and h2_sims is dense[1]  # written in place
    assert np.array_equal(h_ids, h2_ids) and np.array_equal(h_sims, h2_sims)
    assert not np.array_equal(h_ids, d_ids)  # the lexical signal changed the lists (the test is not vacuous)


def test_rescored_lexical_similarity_is_the_cosine(bbc_signals):
    """The scatter/gather dot products of rescoring equal the sparse rows' dot products."""
    x = bbc_signals[1]
    rng = np.random.default_rng(0)
    cand = rng.integers(0, x.shape[0], size=(x.shape[0], 6))
    ids, sims = S.rescore(cand, 6, lexical=x)
    ok = ids >= 0
    rows = np.repeat(np.arange(x.shape[0]), ids.shape[1])[ok.ravel()]
    want = np.asarray(x[rows].multiply(x[ids[ok]]).sum(axis=1)).ravel()
    assert ok.sum() > x.shape[0]
    np.testing.assert_allclose(sims[ok], want, rtol=1e-5, atol=1e-7)


def brute_force_topk(x, k: int, first: int, last: int):
    """Top k of rows first..last-1 of x @ x.T by (decreasing dot, increasing id), self and
    non-positive dots left out (-1 / 0 pad): what `postings_topk` must return."""
    full = (x @ x.T).toarray().astype(np.float64)
    ids = np.full((last - first, k), -1, np.int64)
    sims = np.zeros((last - first, k), np.float64)
    for r in range(first, last):
        row = full[r]
        cand = np.flatnonzero((row > 0) & (np.arange(len(row)) != r))
        best = cand[np.lexsort((cand, -row[cand]))][:k]
        ids[r - first, :len(best)] = best
        sims[r - first, :len(best)] = row[best]
    return ids, sims


@pytest.mark.parametrize("k", [1, 5, 40])
def test_postings_topk_equals_brute_force_with_ties(k):
    """Small integer weights: every dot is exact in float32 and many tie, so the order
    (decreasing similarity, then increasing id) and the heap's selection are checked bit for bit;
    some rows share no term with any other, some have fewer than k neighbours."""
    import scipy.sparse as sp

    rng = np.random.default_rng(7)
    n, terms = 300, 60
    dense = rng.integers(1, 4, size=(n, terms)).astype(np.float32)
    dense[rng.random((n, terms)) > 0.06] = 0.0
    dense[:5] = 0.0
    dense[:5, 59] = 1.0  # five rows that share only term 59: 4 neighbours each
    dense[:, 59][5:] = 0.0
    dense[5:8] = 0.0  # three empty rows
    x = sp.csr_matrix(dense)
    xt = S.postings(x)
    for first, last in [(0, n), (0, 1), (17, 211)]:
        ids, sims = S.postings_topk(x, xt, k, first, last)
        want_ids, want_sims = brute_force_topk(x, k, first, last)
        assert np.array_equal(ids, want_ids)
        assert np.array_equal(sims, want_sims)
    ids, _ = S.postings_topk(x, xt, k, 0, n)
    assert (ids[5:8] == -1).all() and (ids[:5, 4:] == -1).all() and (ids[:5, :min(k, 4)] >= 0).all()
    assert len(np.unique(sims := S.postings_topk(x, xt, 40, 0, n)[1])) < 0.5 * sims.size  # ties are common


def test_rescored_lexical_sims_are_the_ordered_sums_bit_for_bit(bbc_signals):
    """The rescoring's lexical dots (two candidates interleaved, odd counts, repeats and self
    among the candidates) are the float64 sums, in column order, of the float32 products
    (numba's float() of a float32 stays float32, so the products are rounded to float32),
    and each row is ordered by (decreasing similarity, increasing id)."""
    x = bbc_signals[1]
    rng = np.random.default_rng(3)
    n = x.shape[0]
    cand = rng.integers(-1, n, size=(n, 7))
    cand[:, 3] = cand[:, 1]  # repeats
    cand[::5, 2] = np.arange(n)[::5]  # self
    ids, sims = S.rescore(cand, 7, lexical=x)

    def ordered_dot(a: int, b: int) -> float:
        ra = dict(zip(x.indices[x.indptr[a]:x.indptr[a + 1]].tolist(), x.data[x.indptr[a]:x.indptr[a + 1]]))
        s = 0.0
        for col, v in zip(x.indices[x.indptr[b]:x.indptr[b + 1]].tolist(), x.data[x.indptr[b]:x.indptr[b + 1]]):
            if col in ra:
                s += float(ra[col] * v)  # a float32 product
        return s

    for i in range(0, n, 3):
        uniq = sorted({int(j) for j in cand[i] if j >= 0 and j != i})
        dots = {j: ordered_dot(i, j) for j in uniq}
        want = sorted((j for j in uniq if dots[j] > 0), key=lambda j: (-dots[j], j))
        got = [int(j) for j in ids[i] if j >= 0]
        assert got == want
        assert sims[i, :len(got)].tolist() == [float(np.float32(dots[j])) for j in got]
    assert (ids >= 0).sum() > n  # not vacuous


def test_compact_columns_keeps_every_dot_product_and_the_graph(bbc_signals):
    """Columns renumbered in place, in order: the same rows' products term by term, so the
    lexical and hybrid graphs are the same bit for bit, with far fewer columns."""
    emb, x, dense, _ = bbc_signals
    want_l = S.lexical_knn(x, 10, method="pruned")[:2]
    want_h = S.hybrid_knn(emb, x, 10, 0.2, dense, want_l)[:2]
    y = x.copy()
    c = S.compact_columns(y)
    assert c.shape[0] == x.shape[0] and c.shape[1] == len(np.unique(x.indices)) < x.shape[1] // 10
    assert np.array_equal(c.indptr, x.indptr) and np.array_equal(c.data, x.data)
    # each column becomes its rank among the columns in use (so each row keeps its order)
    assert np.array_equal(c.indices, np.searchsorted(np.unique(x.indices), x.indices))
    assert ((c @ c.T) != (x @ x.T)).nnz == 0
    got_l = S.lexical_knn(c, 10, method="pruned")[:2]
    got_h = S.hybrid_knn(emb, c, 10, 0.2, dense, got_l)[:2]
    for a, b in zip(want_l + want_h, got_l + got_h):
        assert np.array_equal(a, b)
