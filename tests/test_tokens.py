"""Tokenize once: the token store, the embedder pooling from its ids, the lexical signal from its ids."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from contextsort.corpus import CorpusReader, DocStore, DocStoreWriter
from contextsort.pack import TokenStream, tokenize_store
from contextsort.similarity import (
    HASH_BASE,
    MASK64,
    N_FEATURES,
    LexicalModel,
    drop_common_terms,
    id_term_counts,
    lexical_knn,
    lexical_vectors,
    lexical_vectors_from_ids,
    token_surfaces,
    word_pieces,
    word_term_counts,
)
from contextsort.tokenizer import get_tokenizer
from contextsort.tokens import content_spans, spans_of_lists

from conftest import write_jsonl


@pytest.fixture(scope="module")
def bbc_texts(bbc_path) -> list[str]:
    files = sorted(bbc_path.rglob("*.txt"))[::5]  # 445 articles, every topic
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


@pytest.fixture(scope="module")
def llama2():
    return get_tokenizer("llama2")


def _store(tmp_path, texts: list[str]) -> DocStore:
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts)])
    w = DocStoreWriter(tmp_path / "store")
    for rec in CorpusReader([path]):
        w.add(rec)
    w.close()
    return DocStore(tmp_path / "store")


@pytest.mark.parametrize("bos", [False, True])
def test_token_store_round_trip_and_deterministic(tmp_path, llama2, bos):
    texts = ["Hello world.", "  spaces  and\nnew lines ", "café £14.5bn {hacker}", "x" * 3000, "\U0001f600 ok"]
    store = _store(tmp_path, texts)
    tokenize_store(store, llama2, tmp_path / "a", bos=bos)
    tokenize_store(store, llama2, tmp_path / "b", bos=bos)
    assert (tmp_path / "a" / "stream.bin").read_bytes() == (tmp_path / "b" / "stream.bin").read_bytes()
    stream = TokenStream.open(tmp_path / "a")
    start, length = content_spans(stream)
    for i, t in enumerate(texts):
        want = llama2.encode_batch([t])[0].tolist()
        assert stream.tokens[start[i] : start[i] + length[i]].tolist() == want
        span = stream.tokens[stream.doc_off[i] : stream.doc_off[i + 1]].tolist()
        assert span[-1] == llama2.eos_id
        assert (span[0] == llama2.bos_id) == bos
    cut = content_spans(stream, max_tokens=3)[1]
    assert cut.tolist() == np.minimum(length, 3).tolist()


@pytest.mark.parametrize("bos", [False, True])
def test_token_store_in_many_overlapping_batches_equals_one_encoding(tmp_path, bbc_texts, llama2, bos):
    """Batches encoded ahead in threads are written in store order: the store equals one
    serial encoding of all texts, byte for byte, whatever the batch size."""
    from contextsort.pack import encode_with_separators
    from contextsort.tokenizer import token_dtype

    texts = bbc_texts[:300]
    store = _store(tmp_path, texts)
    want, seq = encode_with_separators(llama2, texts, bos, token_dtype(llama2.vocab_size))
    for batch_bytes in (1, 5_000, 1 << 20):  # one document per batch, a few dozen batches, one batch
        out = tmp_path / f"tokens{batch_bytes}"
        tokenize_store(store, llama2, out, bos=bos, batch_bytes=batch_bytes)
        assert (out / "stream.bin").read_bytes() == want.tobytes()
        assert np.load(out / "doc_off.npy").tolist() == [0] + np.cumsum(seq).tolist()


def test_encode_ids_equals_encode_on_bbc(tmp_path, bbc_texts, llama2):
    from contextsort.embed.wordllama import WordLlamaEmbedder

    texts = bbc_texts[:200] + ["a", "\U0001f600"]
    emb = WordLlamaEmbedder()
    store = _store(tmp_path, texts)
    tokenize_store(store, llama2, tmp_path / "tokens", bos=True)
    stream = TokenStream.open(tmp_path / "tokens")
    start, length = content_spans(stream)
    assert length.max() > emb.max_tokens  # truncation at 512 tokens is exercised
    got = emb.encode_ids(stream.tokens, start, length)
    want = emb.encode(texts)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got, want)  # bit for bit
    more = texts[:20] + ["", "\n\n"]  # (empty documents never reach a store: ingest rejects them)
    flat, s2, l2 = spans_of_lists([llama2.encode_batch([t])[0].tolist() for t in more])
    assert np.array_equal(emb.encode_ids(flat, s2, l2), emb.encode(more))


def test_encode_ids_rejects_foreign_ids():
    from contextsort.embed.wordllama import WordLlamaEmbedder

    with pytest.raises(ValueError, match="outside the wordllama vocabulary"):
        WordLlamaEmbedder().encode_ids(np.array([5, 100_000]), np.array([0]), np.array([2]))


def _words_hashed(text: str) -> dict[int, float]:
    """What scikit-learn's default analyzer sees (lower-cased \\w\\w+ words), hashed as word_term_counts does."""
    out: dict[int, float] = {}
    for w in re.findall(r"(?u)\b\w\w+\b", text.lower()):
        h = 0
        for c in w:
            h = (h * HASH_BASE + ord(c)) & MASK64
        h ^= h >> 33
        h = (h * 0xFF51AFD7ED558CCD) & MASK64
        h ^= h >> 33
        out[h % N_FEATURES] = out.get(h % N_FEATURES, 0.0) + 1.0
    return out


def test_word_terms_from_ids_are_the_words_of_the_text(bbc_texts, llama2):
    texts = bbc_texts[:100] + ["{hacker} The Hacker's hackers, foo_bar 3.5 café naïve x £14.5bn", "", "!!"]
    flat, start, length = spans_of_lists([llama2.encode_batch([t])[0].tolist() for t in texts])
    x = word_term_counts(flat, start, length, word_pieces(token_surfaces(llama2)))
    for i, t in enumerate(texts):
        row = x[i]
        assert dict(zip(row.indices.tolist(), row.data.tolist())) == _words_hashed(t), t[:80]
    # the same word split differently (after '{' or a space, any case) is one term
    a = _words_hashed("hacker")
    assert set(x[len(texts) - 3].indices.tolist()) >= set(a)


def test_id_terms_count_ids_and_bigrams():
    x = id_term_counts(np.array([5, 6, 5, 7]), np.array([0, 3]), np.array([3, 1]), vocab_size=10)
    row0 = dict(zip(x[0].indices.tolist(), x[0].data.tolist()))
    assert row0[5] == 2.0 and row0[6] == 1.0
    bigrams = {f: c for f, c in row0.items() if f >= 10}
    assert len(bigrams) == 2 and set(bigrams.values()) == {1.0}  # (5,6) and (6,5) differ
    assert dict(zip(x[1].indices.tolist(), x[1].data.tolist())) == {7: 1.0}


def test_tfidf_weights_by_hand():
    """Three documents over words a, b, c, d: smooth idf, sublinear tf, unit rows."""
    import scipy.sparse as sp

    # doc0: a a b; doc1: b c; doc2: c d   (columns a=0, b=1, c=2, d=3)
    counts = sp.csr_matrix(np.array([[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float32))
    x = LexicalModel.fit(counts, "tfidf").transform(counts).toarray()
    idf = lambda df: math.log(4 / (1 + df)) + 1  # noqa: E731
    row0 = np.array([(1 + math.log(2)) * idf(1), idf(2), 0, 0])
    assert np.allclose(x[0], row0 / np.linalg.norm(row0), atol=1e-6)
    row2 = np.array([0, 0, idf(2), idf(1)])
    assert np.allclose(x[2], row2 / np.linalg.norm(row2), atol=1e-6)
    # document frequency above max_df: the term is dropped (stop words by frequency)
    dropped = drop_common_terms(sp.csr_matrix(np.array([[1, 1], [1, 0], [1, 0]], dtype=np.float32)), max_df=0.5)
    assert dropped.toarray().tolist() == [[0, 1], [0, 0], [0, 0]]


def test_lexical_from_ids_finds_the_text_neighbours_and_shares_rare_terms(bbc_texts, llama2):
    texts = bbc_texts
    flat, start, length = spans_of_lists([llama2.encode_batch([t])[0].tolist() for t in texts])
    x_ids = lexical_vectors_from_ids(flat, start, length, llama2)
    again = lexical_vectors_from_ids(flat, start, length, llama2)
    assert (x_ids != again).nnz == 0  # deterministic
    ids, sims, _ = lexical_knn(x_ids, 10, method="exact")
    t_ids, _, _ = lexical_knn(lexical_vectors(texts), 10, method="exact")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), t_ids.tolist())])
    assert recall >= 0.7  # same words; only the stop words (list vs document frequency) differ
    df = np.bincount(x_ids.indices, minlength=x_ids.shape[1])
    rare = df <= len(texts) // 50
    shares = [bool(rare[np.intersect1d(x_ids[i].indices, x_ids[j].indices)].any()) for i, j in enumerate(ids[:, 0]) if j >= 0]
    assert np.mean(shares) >= 0.95


def _word_pieces_one_by_one(surfaces):
    """The definition of `word_pieces`, character by character in Python."""
    from contextsort.similarity import WORD_CONTINUE, WORD_START

    kind = np.zeros(len(surfaces), np.int8)
    h = np.zeros(len(surfaces), np.uint64)
    p = np.ones(len(surfaces), np.uint64)
    ln = np.zeros(len(surfaces), np.int64)
    for i, s in enumerate(surfaces):
        body = s.lstrip(" ")
        if not body or not all(c.isalnum() or c == "_" or 0xDC80 <= ord(c) <= 0xDCFF for c in body):
            continue
        kind[i] = WORD_START if len(body) < len(s) else WORD_CONTINUE
        hv, pv = 0, 1
        for c in body.lower():
            hv = (hv * HASH_BASE + ord(c)) & MASK64
            pv = (pv * HASH_BASE) & MASK64
        h[i], p[i], ln[i] = hv, pv, len(body)
    return kind, h, p, ln


def test_word_pieces_equal_their_definition(llama2):
    """Every piece of the real vocabulary, and pieces whose lower case is longer ('İ'),
    non-ASCII digits and letters, escaped bytes, '_', inner spaces and punctuation."""
    tricky = ["İ", " İstanbul", "ß", " ΣΑΣ", "٣٤", "_", " a_b", "\udc80\udcff", " caf\udcc3\udca9", "a b", " ",
              "", "  x", "x.", " x-y", "Ⅻ", "½", "\u00e9", "e\u0301", " 𝔘nicode", "\t", "\udc7f"]
    surfaces = token_surfaces(llama2) + tricky
    got, want = word_pieces(surfaces), _word_pieces_one_by_one(surfaces)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)
    kind = got[0]
    assert kind[-len(tricky):].tolist().count(0) >= 5 and (kind > 0).sum() > 20_000  # both kinds are present
