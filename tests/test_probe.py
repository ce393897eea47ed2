"""The probe: stream construction (same tokens, no held-out document), the NLL scorer against
hand-computed values, and a tiny end-to-end probe whose probe.json is complete and finite."""

from __future__ import annotations

import json
import math
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from contextsort.corpus import DocStoreWriter, Record
from contextsort.probe import (
    PAD,
    ProbeError,
    ProbeUnavailable,
    Streams,
    build_streams,
    check_streams,
    eval_pairs,
    load_torch,
    pair_sequences,
    read_run,
    run_probe,
    scored_mean,
    shrink_vocab,
    remap,
    summary_line,
)
from contextsort.sample import bbc_news_path


def bag_of_words(texts: list[str], dim: int = 256) -> np.ndarray:
    """Unit-norm hashed word counts: a cheap embedding whose neighbours share words."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            out[i, zlib.crc32(w.encode()) % dim] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run directory with 90 short BBC articles (topics interleaved in the store), ordered by topic."""
    run = tmp_path_factory.mktemp("probe_run")
    topics = sorted(d for d in bbc_news_path().iterdir() if d.is_dir())
    files = [sorted(d.glob("*.txt"))[:18] for d in topics]
    rows = [{"label": d.name, "text": f[i].read_text(encoding="utf-8", errors="replace")} for i in range(18) for d, f in zip(topics, files)]
    texts = [r["text"][:700] for r in rows]
    writer = DocStoreWriter(run / "store")
    for i, (r, t) in enumerate(zip(rows, texts)):
        writer.add(Record("bbc", i + 1, i, t, {"id": i, "text": t, "label": r["label"]}))
    assert writer.close() == []
    np.save(run / "embeddings.npy", bag_of_words(texts))
    np.save(run / "order.npy", np.argsort([r["label"] for r in rows], kind="stable").astype(np.int64))
    np.save(run / "dup_of.npy", np.full(len(rows), -1, dtype=np.int64))
    (run / "manifest.json").write_text("{}")
    return run


@pytest.fixture(scope="module")
def corpus(tiny_run):
    return read_run(tiny_run)


# -------------------------------------------------------------------------------------- streams


@pytest.mark.parametrize("budget", ["one pass", "a fifth", "2.5 passes"])
@pytest.mark.parametrize("seed", [0, 1])
def test_streams_same_tokens_and_no_heldout(corpus, seed, budget):
    one_pass = int(0.9 * len(corpus.ids))  # about the training documents' tokens
    tokens = {"one pass": None, "a fifth": one_pass // 5, "2.5 passes": int(2.5 * one_pass)}[budget]
    s = build_streams(corpus, 64, seed, tokens)
    held = set(s.held_docs.tolist())
    assert len(s.held_docs) == round(0.1 * len(corpus.order))
    assert not held & set(s.standard_docs.tolist()) and not held & set(s.ordered_docs.tolist())
    if tokens is None:
        assert sorted(s.train_docs.tolist() + s.held_docs.tolist()) == sorted(corpus.order.tolist())
    # ordered keeps the run's order; standard is a different permutation of the same documents
    rank = [corpus.rank[int(p)] for p in s.ordered_docs]
    assert rank == sorted(rank)
    assert sorted(s.standard_docs.tolist()) == sorted(s.ordered_docs.tolist()) and list(s.standard_docs) != list(s.ordered_docs)
    # both streams hold exactly the training documents' tokens, `passes` times, and nothing else
    expected = Counter()
    for p in s.train_docs:
        expected.update(corpus.tokens(p).tolist())
    expected = Counter({k: v * s.passes for k, v in expected.items()})
    assert Counter(s.standard[s.standard != PAD].tolist()) == expected
    assert Counter(s.ordered[s.ordered != PAD].tolist()) == expected
    assert s.standard.shape == s.ordered.shape and s.standard.shape[1] == 64
    if budget == "a fifth":
        assert s.passes == 1 and tokens <= (s.ordered != PAD).sum() < 0.5 * one_pass
    if budget == "2.5 passes":
        assert s.passes == 2


def test_stream_checks_catch_a_held_out_document_and_a_changed_token(corpus):
    s = build_streams(corpus, 64, 0)
    leaked = Streams(s.train_docs, s.held_docs, s.standard_docs, np.append(s.ordered_docs, s.held_docs[0]), s.standard, s.ordered, s.passes)
    with pytest.raises(ProbeError, match="held-out"):
        check_streams(leaked)
    changed = s.ordered.copy()
    changed[0, 0] = changed[0, 0] + 1
    with pytest.raises(ProbeError, match="multiset"):
        check_streams(Streams(s.train_docs, s.held_docs, s.standard_docs, s.ordered_docs, s.standard, changed, s.passes))


def test_pairs_nearest_neighbour_and_aligned_sequences(corpus):
    s = build_streams(corpus, 64, 0)
    B, A, R = eval_pairs(s.held_docs, corpus, np.random.default_rng(0))
    e = corpus.embeddings
    for b, a, r in zip(B, A, R):
        assert a != b and r != b and r != a and {a, r} <= set(s.held_docs.tolist())
        others = [p for p in s.held_docs if p != b]
        assert e[b] @ e[a] == pytest.approx(max(e[b] @ e[p] for p in others))
    L, T = 64, 16
    seqs, start, count = pair_sequences(corpus, B, A, R, L, T)
    n = len(B)
    for i in range(n):
        b_tokens = corpus.tokens(B[i])[:-1][:T]
        assert start[i] == start[n + i] and count[i] == count[n + i] == len(b_tokens)
        for row in (i, n + i):
            assert seqs[row, start[row]] == corpus.eos_id  # EOS, then B at the same positions after either prefix
            assert list(seqs[row, start[row] + 1 : start[row] + 1 + count[row]]) == list(b_tokens)
        assert list(seqs[i, : start[i]]) == list(corpus.tokens(A[i])[:-1][len(corpus.tokens(A[i])) - 1 - start[i] :])


def test_vocabulary_shrinks_to_seen_ids_plus_unknown():
    table, vocab = shrink_vocab(np.array([7, 7, 7, 3, 3, 9]), eos_id=2)
    assert vocab == 5  # 7, 3, 9, 2, unknown
    assert table[7] == 0 and table[3] == 1 and {table[9], table[2]} == {2, 3}
    assert list(remap(table, vocab - 1, np.array([7, 5, 100, PAD]))) == [0, 4, 4, PAD]


# -------------------------------------------------------------------------------------- torch


def test_missing_torch_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ProbeUnavailable, match="contextsort\\[probe\\]"):
        load_torch()


def test_scorer_matches_hand_computed_nll():
    torch = pytest.importorskip("torch")
    from contextsort.probe_model import sequence_nll

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]])  # next-token logits given the previous token

    class Bigram(torch.nn.Module):
        def token_nll(self, inputs, targets):
            lp = torch.log_softmax(logits[inputs], dim=-1)
            out = -lp.gather(-1, targets.clamp_min(0)[..., None])[..., 0]
            return torch.where(targets == PAD, torch.zeros_like(out), out)

    def nll(prev, nxt):
        row = logits[prev].tolist()
        return -(row[nxt] - math.log(sum(math.exp(v) for v in row)))

    seqs = np.array([[0, 1, 2, 2, 0], [2, 2, 1, PAD, PAD]])
    start, count = np.array([1, 0]), np.array([3, 2])
    got = scored_mean(sequence_nll(Bigram(), seqs, 1, "cpu"), start, count)
    want = [(nll(1, 2) + nll(2, 2) + nll(2, 0)) / 3, (nll(2, 2) + nll(2, 1)) / 2]
    assert got == pytest.approx(want, rel=1e-6)
    assert np.isnan(sequence_nll(Bigram(), seqs, 2, "cpu")[1, 2:]).all()  # padding is never scored


def test_model_nll_is_the_normalised_adaptive_softmax():
    torch = pytest.importorskip("torch")
    from contextsort.probe_model import TinyLM

    torch.manual_seed(0)
    m = TinyLM(vocab=40, width=16, layers=1, heads=2, context_length=8).eval()
    x = torch.randint(0, 40, (2, 8))
    with torch.no_grad():
        got = m.token_nll(x[:, :-1], x[:, 1:])
        lp = m.output.log_prob(m.hidden(x[:, :-1]).reshape(-1, 16))
        assert torch.allclose(lp.exp().sum(-1), torch.ones(14), atol=1e-5)
        want = -lp.gather(1, x[:, 1:].reshape(-1, 1)).reshape(2, 7)
    assert torch.allclose(got, want, atol=1e-5)
    # causal: changing a later token leaves earlier NLLs unchanged
    y = x.clone()
    y[:, 5] = (y[:, 5] + 1) % 40
    with torch.no_grad():
        assert torch.allclose(m.token_nll(y[:, :-1], x[:, 1:])[:, :5], got[:, :5], atol=1e-5)


def finite_numbers(x) -> list[float]:
    if isinstance(x, dict):
        return [v for k in x for v in finite_numbers(x[k])]
    if isinstance(x, list):
        return [v for k in x for v in finite_numbers(k)]
    return [x] if isinstance(x, (int, float)) and not isinstance(x, bool) else []


def test_tiny_probe_writes_complete_finite_json(tiny_run):
    pytest.importorskip("torch")
    result = run_probe(tiny_run, seeds=2, context_length=64, score_tokens=16, width=32, layers=1, heads=2, batch_size=4, threads=1, progress=False)
    data = json.loads((tiny_run / "probe.json").read_text())
    assert data == json.loads(json.dumps(result))
    nums = finite_numbers({k: v for k, v in data.items() if k != "config"})
    assert nums and all(math.isfinite(v) for v in nums)
    for name in ("standard", "ordered"):
        m = data[name]
        for key in ("nll_related", "nll_random", "gain", "heldout_nll", "train_loss_final"):
            assert math.isfinite(m[key])
        assert m["gain"] == pytest.approx(m["nll_random"] - m["nll_related"], abs=1e-9)
        assert len(m["per_seed"]) == 2 and 0 < m["heldout_nll"] < 20
    g = data["gain_difference"]
    assert g["ci95"][0] <= g["mean"] <= g["ci95"][1]
    assert g["mean"] == pytest.approx(data["ordered"]["gain"] - data["standard"]["gain"], abs=1e-9)
    assert g["seed_min"] <= g["mean"] <= g["seed_max"] and g["pairs"] == 2 * 9
    assert data["checks"] == {"same_token_multiset": True, "heldout_in_streams": 0}
    c = data["config"]
    assert c["seeds_done"] == 2 and c["train_tokens"] > 0 and c["vocab"] > 2 and c["parameters"] > 0
    assert "gain_difference" in summary_line(data)


def test_bad_run_dir_and_options_are_probe_errors(tmp_path, tiny_run):
    pytest.importorskip("torch")
    with pytest.raises(ProbeError, match="not a finished run"):
        run_probe(tmp_path)
    with pytest.raises(ProbeError, match="score_tokens"):
        run_probe(tiny_run, context_length=64, score_tokens=40)
