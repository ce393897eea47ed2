"""Packing into training contexts: plans, token conservation, shuffle, runner stages, CLI."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import contextsort
from contextsort.config import Config
from contextsort.pack import (
    TokenStream,
    context_docs,
    encode_with_separators,
    pack_stats,
    parse_size,
    plan_boundary,
    plan_concat,
    plan_contexts,
    shuffle_permutation,
)
from contextsort.tokenizer import get_tokenizer, token_dtype

from conftest import write_jsonl

TOPICS = {
    "football": "goal striker league match penalty keeper midfield coach season stadium fans referee",
    "cooking": "recipe oven flour butter sugar simmer garlic onion sauce bake dough pepper",
    "space": "orbit rocket planet telescope galaxy astronaut launch satellite comet nebula lunar",
    "finance": "market shares investor profit bank interest inflation bond stock dividend earnings",
}


def _synthetic_rows(n_per_topic: int = 12, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for t, words in TOPICS.items():
        w = words.split()
        for i in range(n_per_topic):
            n_sent = int(rng.integers(2, 60))
            sents = [" ".join(rng.choice(w, size=int(rng.integers(5, 14)))).capitalize() + "." for _ in range(n_sent)]
            rows.append({"id": f"{t}-{i}", "text": f"{t} {i}: " + " ".join(sents), "label": t})
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A finished (unpacked) run on 48 synthetic documents of 4 topics."""
    d = tmp_path_factory.mktemp("small")
    src = write_jsonl(d / "corpus.jsonl", _synthetic_rows())
    return contextsort.run([src], d / "run")


def _copy_run(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst, ignore=shutil.ignore_patterns("tokens", "packed", "tokens.tmp", "packed.tmp"))
    return dst


# ---------------------------------------------------------------------------------------
# tokenisation
# ---------------------------------------------------------------------------------------


def test_default_tokenizer_is_offline_llama2():
    tok = get_tokenizer()
    assert tok.vocab_size == 32000 and tok.eos_id == 2 and tok.bos_id == 1
    assert token_dtype(tok.vocab_size) == np.uint16
    flat, lens = tok.encode_batch(["Hello world.", "", "a b c"])
    assert lens.tolist() == [3, 0, 3] and flat.tolist()[:3] == [15043, 3186, 29889]


def test_separators_layout():
    tok = get_tokenizer()
    texts = ["Hello world.", "", "Second document here."]
    flat, lens = tok.encode_batch(texts)
    for bos in (False, True):
        ids, seq = encode_with_separators(tok, texts, bos, np.uint16)
        assert seq.tolist() == (lens + 1 + bos).tolist() and len(ids) == seq.sum()
        pos, k = 0, 0
        for n in lens:
            piece = ids[pos:pos + n + 1 + bos]
            if bos:
                assert piece[0] == tok.bos_id
            assert piece[-1] == tok.eos_id
            assert piece[bos:bos + n].tolist() == flat[k:k + n].tolist()
            pos += n + 1 + bos
            k += n


def test_tokenizer_from_json_path_and_big_vocab(tmp_path):
    """A tokenizer.json path works, and a vocabulary over 65,536 gives uint32 tokens."""
    path = _big_vocab_tokenizer(tmp_path)
    tok = get_tokenizer(str(path))
    assert tok.vocab_size > 1 << 16 and tok.eos_id == 0
    assert token_dtype(tok.vocab_size) == np.uint32
    flat, lens = tok.encode_batch(["w70000 w5 w65999"])
    assert flat.tolist() == [70000 + 2, 5 + 2, 65999 + 2]


def _big_vocab_tokenizer(d: Path, n: int = 70_010) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"</s>": 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(n)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = d / "tokenizer.json"
    tok.save(str(path))
    return path


def test_tokenizer_folder_reads_special_tokens_from_config(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "<|end|>": 1, "<|start|>": 2, "a": 3, "b": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|end|>", "bos_token": {"content": "<|start|>"}}))
    t = get_tokenizer(str(tmp_path))
    assert (t.eos_id, t.bos_id, t.vocab_size) == (1, 2, 5)
    ids, seq = encode_with_separators(t, ["a b", "b"], True, np.uint16)
    assert ids.tolist() == [2, 3, 4, 1, 2, 4, 1] and seq.tolist() == [4, 3]


def test_unknown_tokenizer_is_a_clear_error(tmp_path):
    from contextsort.tokenizer import TokenizerUnavailable

    with pytest.raises(TokenizerUnavailable):
        get_tokenizer(str(tmp_path / "missing" / "tokenizer.json"))


def test_tiktoken_spec_when_installed():
    pytest.importorskip("bpe_openai")
    tok = get_tokenizer("tiktoken:cl100k_base")
    assert tok.eos_id == 100257 and token_dtype(tok.vocab_size) == np.uint32
    flat, lens = tok.encode_batch(["hello world", "x"])
    assert lens.tolist() == [2, 1]


# ---------------------------------------------------------------------------------------
# plans
# ---------------------------------------------------------------------------------------


def test_concat_plan():
    p = plan_concat(25, 10)
    assert p.start.tolist() == [0, 10, 20] and p.length.tolist() == [10, 10, 5] and p.dropped_tokens == 0
    p = plan_concat(25, 10, drop_last=True)
    assert p.length.tolist() == [10, 10] and p.dropped_tokens == 5
    p = plan_concat(30, 10, drop_last=True)
    assert p.length.tolist() == [10, 10, 10] and p.dropped_tokens == 0


def _check_plan(plan, seq_len, L, min_split=None, mode="boundary"):
    seq_len = np.asarray(seq_len)
    T = int(seq_len.sum())
    assert np.all(plan.length >= 1) and np.all(plan.length <= L)
    ends = plan.start + plan.length
    assert plan.start[0] == 0 if len(plan) else True
    assert np.all(plan.start[1:] == ends[:-1])  # contiguous, in stream order
    assert int(plan.length.sum()) + plan.dropped_tokens == T
    bound = np.concatenate([[0], np.cumsum(seq_len)])
    cd = context_docs(bound, plan)
    per_doc = np.bincount(cd.doc, minlength=len(seq_len))
    kept_docs = per_doc > 0
    # every piece is where the stream says, and pieces fill their context from offset 0
    assert np.all(cd.offset[cd.ptr[:-1]] == 0)
    assert np.all(cd.length >= 1)
    assert np.all(np.add.reduceat(cd.length, cd.ptr[:-1]) == plan.length)
    if mode == "boundary":
        ms = L // 4 if min_split is None else min_split
        short = (seq_len < ms) & (seq_len <= L)
        assert np.all(per_doc[short & kept_docs] == 1), "a document shorter than min_split was split"
        if plan.dropped_tokens == 0:
            long_ = seq_len > L
            assert np.all(per_doc[long_] >= np.ceil(seq_len[long_] / L)), "a document longer than L was not split"
    return cd


@settings(max_examples=150, deadline=None)
@given(
    lens=st.lists(st.integers(1, 60), min_size=1, max_size=40),
    L=st.integers(2, 50),
    pad_weight=st.sampled_from([0.0, 1.0, 4.0, 100.0]),
    split_cost=st.sampled_from([0.0, 1.0, 5.0]),
    min_split=st.sampled_from([None, 1, 10, 10**9]),
    drop_last=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_boundary_plan_is_valid(lens, L, pad_weight, split_cost, min_split, drop_last, seed):
    sims = np.random.default_rng(seed).uniform(-0.2, 1.0, len(lens) - 1)
    plan = plan_boundary(np.asarray(lens), L, sims, pad_weight, split_cost, min_split, drop_last)
    _check_plan(plan, lens, L, min_split)
    if drop_last and len(plan):
        assert plan.dropped_tokens == 0 or plan.dropped_tokens < L


@settings(max_examples=60, deadline=None)
@given(lens=st.lists(st.integers(1, 30), min_size=1, max_size=30), L=st.integers(2, 40), drop_last=st.booleans())
def test_concat_plan_is_valid(lens, L, drop_last):
    plan = plan_contexts(np.asarray(lens), L, "concat", drop_last=drop_last)
    _check_plan(plan, lens, L, mode="concat")
    assert np.all(plan.length[:-1] == L)


def _brute_force_cost(seq_len, L, sims, pad_weight, split_cost, min_split):
    """The least cost over the same choices as the DP, by memoised recursion (no shared code)."""
    bound = [0]
    for x in seq_len:
        bound.append(bound[-1] + x)
    T, n = bound[-1], len(seq_len)
    splittable = [x >= min_split or x > L for x in seq_len]

    def doc_at(p):
        return max(i for i in range(n) if bound[i] <= p)

    @functools.lru_cache(maxsize=None)
    def best(p, mid_doc):  # mid_doc: -1 at a document boundary, else the document p is inside
        if p == T:
            return 0.0
        out = float("inf")
        for k in range(n + 1):
            if p < bound[k] <= p + L:
                cut = sims[k - 1] if k < n else 0.0
                out = min(out, pad_weight * (L - (bound[k] - p)) / L + cut + best(bound[k], -1))
        q = p + L
        if q < T:
            d = doc_at(q)
            if bound[d] != q and splittable[d] and (mid_doc < 0 or mid_doc == d):
                out = min(out, split_cost + best(q, d))
        return out

    return best(0, -1)


@settings(max_examples=80, deadline=None)
@given(
    lens=st.lists(st.integers(1, 25), min_size=1, max_size=12),
    L=st.integers(3, 30),
    pad_weight=st.sampled_from([0.5, 4.0]),
    split_cost=st.sampled_from([0.3, 1.0]),
    min_split=st.sampled_from([1, 8, 10**9]),
    seed=st.integers(0, 100),
)
def test_boundary_plan_is_optimal(lens, L, pad_weight, split_cost, min_split, seed):
    sims = np.random.default_rng(seed).uniform(0, 1, len(lens) - 1)
    plan = plan_boundary(np.asarray(lens), L, sims, pad_weight, split_cost, min_split)
    # cost of the plan found
    bound = np.concatenate([[0], np.cumsum(lens)])
    cost = 0.0
    for s, ln in zip(plan.start, plan.length):
        e = s + ln
        if e in bound:
            k = int(np.searchsorted(bound, e))
            cost += pad_weight * (L - ln) / L + (sims[k - 1] if k < len(lens) else 0.0)
        else:
            assert ln == L
            cost += split_cost
    assert cost == pytest.approx(_brute_force_cost(list(lens), L, list(sims), pad_weight, split_cost, min_split), abs=1e-9)


def test_boundary_cuts_at_the_weak_link():
    # 9 documents of 25 tokens, L = 100: three contexts are needed whatever the cuts, so the
    # padding is the same and the cuts go to the weakest links
    seq = np.full(9, 25)
    sims = np.full(8, 0.9)
    sims[2] = -0.5  # between documents 2 and 3
    sims[5] = 0.1  # between documents 5 and 6
    plan = plan_boundary(seq, 100, sims, pad_weight=4.0)
    assert plan.start.tolist() == [0, 75, 150]
    # 8 documents: two full contexts, unless a weak link is worth a third context's padding
    seq = np.full(8, 25)
    sims = np.full(7, 0.9)
    sims[2], sims[6] = -0.5, 0.3
    assert plan_boundary(seq, 100, sims, pad_weight=4.0).start.tolist() == [0, 100]
    assert plan_boundary(seq, 100, sims, pad_weight=0.5).start.tolist() == [0, 75, 175]
    # concat ignores the links
    assert plan_contexts(seq, 100, "concat").start.tolist() == [0, 100]


def test_long_documents_are_split_into_L_pieces():
    seq = np.array([10, 250, 10, 30])
    L = 100
    for mode in ("concat", "boundary"):
        plan = plan_contexts(seq, L, mode, np.zeros(3))
        cd = _check_plan(plan, seq, L, mode=mode)
        assert np.bincount(cd.doc)[1] >= 3
    plan = plan_boundary(seq, L, np.zeros(3), min_split=10**9)
    # the 250-token document fills the first context behind document 0, then goes on
    assert plan.length.tolist()[:3] == [100, 100, 100]


def test_parse_size():
    assert parse_size("1GB") == 10**9 and parse_size("2MiB") == 2 << 20 and parse_size("512") == 512
    assert parse_size(None) is None and parse_size("0") is None
    with pytest.raises(ValueError):
        parse_size("lots")


def test_shuffle_permutation_is_seeded():
    a, b, c = shuffle_permutation(100, 1), shuffle_permutation(100, 1), shuffle_permutation(100, 2)
    assert (a == b).all() and not (a == c).all() and sorted(a.tolist()) == list(range(100))
    assert (shuffle_permutation(5, 1, shuffle=False) == np.arange(5)).all()


# ---------------------------------------------------------------------------------------
# the stages on a run
# ---------------------------------------------------------------------------------------


def _contexts_from_numpy(packed: Path):
    info = json.loads((packed / "pack.json").read_text())
    L, dt = info["context_length"], np.dtype(info["dtype"])
    toks, idx = [], {"length": [], "context": [], "doc_offsets": [], "doc_positions": [], "ptr": []}
    for f in info["files"]["numpy"]:
        if f.endswith(".bin"):
            toks.append(np.fromfile(packed / f, dtype=dt).reshape(-1, L))
        else:
            with np.load(packed / f) as z:
                for k in ("length", "context", "doc_offsets", "doc_positions"):
                    idx[k].append(z[k])
                idx["ptr"].append(z["doc_offsets_ptr"])
    return info, np.concatenate(toks), idx


@pytest.mark.parametrize("mode,bos,drop_last", [("concat", False, False), ("concat", True, True), ("boundary", False, False), ("boundary", True, True)])
def test_token_conservation(small_run, tmp_path, mode, bos, drop_last):
    """Tokens in contexts == tokens of the kept documents + separators (- dropped), and the
    contexts, put back in plan order, are exactly the ordered documents' tokens."""
    run_dir = _copy_run(small_run.run_dir, tmp_path)
    L = 300
    res = contextsort.pack_run(run_dir, context_length=L, mode=mode, bos=bos, drop_last=drop_last, formats=["numpy"])
    info, toks, idx = _contexts_from_numpy(run_dir / "packed")
    tok = get_tokenizer()
    # tokenise the kept documents in order, independently of the stage
    rows = [json.loads(x) for x in (run_dir / "ordered.jsonl").read_text().splitlines()]
    flat, lens = tok.encode_batch([r["text"] for r in rows])
    c = info["counts"]
    assert c["documents"] == len(rows) == len(res.order)
    assert c["document_tokens"] == int(lens.sum())
    assert c["separator_tokens"] == len(rows) * (1 + bos)
    lengths = np.concatenate(idx["length"])
    assert int(lengths.sum()) == c["context_tokens"] == int(lens.sum()) + len(rows) * (1 + bos) - c["dropped_tokens"]
    assert (c["dropped_tokens"] > 0) == (drop_last and c["dropped_tokens"] > 0)
    if not drop_last:
        assert c["dropped_tokens"] == 0
    # rebuild the stream from contexts in plan order
    context = np.concatenate(idx["context"])
    assert sorted(context.tolist()) == list(range(len(context)))
    inv = np.argsort(context)
    stream = np.concatenate([toks[i, :lengths[i]] for i in inv])
    ids, _ = encode_with_separators(tok, [r["text"] for r in rows], bos, np.uint16)
    assert stream.tolist() == ids[:len(stream)].tolist() and len(stream) == len(ids) - c["dropped_tokens"]
    # padding is the pad id (EOS by default)
    for i in range(len(toks)):
        assert (toks[i, lengths[i]:] == info["pad_id"]).all()
    # doc offsets point at document starts: the token before each (but the first) is an EOS
    offs = np.concatenate(idx["doc_offsets"])
    counts = np.concatenate([np.diff(p) for p in idx["ptr"]])
    k = 0
    for i in range(len(toks)):
        o = offs[k:k + counts[i]]
        k += counts[i]
        assert o[0] == 0 and np.all(np.diff(o) > 0) and o[-1] < lengths[i]
        assert np.all(toks[i, o[1:] - 1] == tok.eos_id)


def test_pack_resumes_and_reuses_tokens(small_run, tmp_path):
    run_dir = _copy_run(small_run.run_dir, tmp_path)
    r1 = contextsort.pack_run(run_dir, context_length=256)
    assert r1.skipped == []
    r2 = contextsort.pack_run(run_dir, context_length=256)
    assert set(r2.skipped) == {"tokenize", "pack", "report"}
    r3 = contextsort.pack_run(run_dir, context_length=256, mode="boundary")
    assert r3.skipped == ["tokenize"]
    assert r3.manifest["metrics"]["pack"]["mode"] == "boundary"
    r4 = contextsort.pack_run(run_dir, context_length=256, mode="boundary", bos=True)
    assert r4.skipped == []
    # a missing output file makes the stage run again
    (run_dir / "packed" / "parquet" / "train-00000-of-00001.parquet").unlink()
    # (the report is reused: the repacked files are the same)
    assert contextsort.pack_run(run_dir, context_length=256, mode="boundary", bos=True).skipped == ["tokenize", "report"]
    # a full rerun of the pipeline with packing keeps every stage
    cfg = Config.from_dict(r4.manifest["config"])
    r5 = contextsort.run(r4.manifest["inputs"], run_dir, cfg)
    assert set(r5.skipped) >= {"ingest", "tokenize", "embed", "neighbors", "dedup", "order", "write", "tokenize", "pack", "report"}


def test_run_with_context_length_packs(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", _synthetic_rows(6))
    cfg = Config()
    cfg.pack.context_length = 128
    cfg.pack.formats = ["parquet", "numpy"]
    res = contextsort.run([src], tmp_path / "run", cfg)
    assert (tmp_path / "run" / "packed" / "pack.json").exists()
    m = res.metrics["pack"]
    assert m["contexts"] >= 1 and m["adds_up"]
    # changing only the embedder-independent pack options recomputes only pack
    cfg.pack.mode = "boundary"
    res2 = contextsort.run([src], tmp_path / "run", cfg)
    assert "tokenize" in res2.skipped and "pack" not in res2.skipped


def test_seeded_shuffle_reproducible(small_run, tmp_path):
    a = _copy_run(small_run.run_dir, tmp_path / "a")
    b = _copy_run(small_run.run_dir, tmp_path / "b")
    contextsort.pack_run(a, context_length=200, formats=["numpy"], seed=5)
    contextsort.pack_run(b, context_length=200, formats=["numpy"], seed=5)
    _, ta, ia = _contexts_from_numpy(a / "packed")
    _, tb, ib = _contexts_from_numpy(b / "packed")
    assert (ta == tb).all()
    contextsort.pack_run(b, context_length=200, formats=["numpy"], seed=6)
    _, tc, ic = _contexts_from_numpy(b / "packed")
    assert sorted(map(bytes, ta)) == sorted(map(bytes, tc)) and not (ta == tc).all()
    contextsort.pack_run(b, context_length=200, formats=["numpy"], shuffle=False)
    _, _, idx = _contexts_from_numpy(b / "packed")
    assert (np.concatenate(idx["context"]) == np.arange(len(ta))).all()


def test_shuffle_breaks_links_between_contexts_on_bbc(bbc_run, tmp_path):
    """Consecutive written contexts are no more similar than random pairs, while the documents
    inside a context stay as related as in the ordered corpus."""
    run_dir = _copy_run(bbc_run.run_dir, tmp_path)
    res = contextsort.pack_run(run_dir, context_length=2048, formats=["numpy"], seed=0)
    m = json.loads((run_dir / "packed" / "pack.json").read_text())["metrics"]
    ac = m["across_contexts"]
    assert ac["unshuffled"] > ac["random"] + 0.2  # without the shuffle, neighbours are related
    assert abs(ac["written"] - ac["random"]) < 0.05  # shuffled: like random pairs
    ordered = res.metrics["adjacent_similarity"]["ordered"]
    random = res.metrics["adjacent_similarity"]["random"]
    assert m["within_context_adjacent_similarity"] >= ordered - 0.01
    assert m["within_context_adjacent_similarity"] > random + 0.3
    # and directly from the written files: similarity of the documents at the end of context
    # k and the start of context k+1 is at the random level
    emb = np.load(run_dir / "embeddings.npy")
    order = np.load(run_dir / "order.npy")
    _, _, idx = _contexts_from_numpy(run_dir / "packed")
    pos, ptr = idx["doc_positions"][0], idx["ptr"][0]
    last = order[pos[ptr[1:] - 1]]
    first = order[pos[ptr[:-1]]]
    across = float(np.mean(np.sum(emb[last[:-1]] * emb[first[1:]], axis=1)))
    assert across < random + 0.1
    inside = np.flatnonzero(np.diff(pos) == 1)
    within = float(np.mean(np.sum(emb[order[pos[inside]]] * emb[order[pos[inside + 1]]], axis=1)))
    assert within > ordered - 0.05


def test_boundary_mode_splits_fewer_documents_on_bbc(bbc_run, tmp_path):
    run_dir = _copy_run(bbc_run.run_dir, tmp_path)
    out = {}
    for mode in ("concat", "boundary"):
        contextsort.pack_run(run_dir, context_length=2048, mode=mode, formats=["numpy"])
        out[mode] = json.loads((run_dir / "packed" / "pack.json").read_text())["metrics"]
    c, b = out["concat"], out["boundary"]
    assert b["documents_split_share"] < c["documents_split_share"] / 2
    assert b["within_context_adjacent_similarity"] >= c["within_context_adjacent_similarity"]
    assert b["within_context_pairwise_similarity"] > c["within_context_pairwise_similarity"]
    assert b["waste"] < 0.15


def test_pack_stats_counts():
    seq = np.array([5, 5, 5, 5])
    plan = plan_concat(20, 8)
    bound = np.concatenate([[0], np.cumsum(seq)])
    cd = context_docs(bound, plan)
    s = pack_stats(plan, cd, seq, np.array([0.5, 0.1, 0.9]))
    assert s["contexts"] == 3 and s["padding_tokens"] == 4 and s["context_tokens"] == 20
    assert s["documents_split"] == 2  # documents 1 (5..10 across 8) and 3 (15..20 across 16)
    assert s["within_context_adjacent_similarity"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------


def test_cli_pack(small_run, tmp_path, capsys):
    from contextsort.cli import main

    run_dir = _copy_run(small_run.run_dir, tmp_path)
    rc = main(["pack", str(run_dir), "-L", "256", "--pack-mode", "boundary", "--pack-format", "numpy,megatron", "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "packed" in out and "boundary" in out
    info = json.loads((run_dir / "packed" / "pack.json").read_text())
    assert info["mode"] == "boundary" and set(info["files"]) == {"numpy", "megatron"}
    assert main(["pack", str(run_dir), "-L", "256", "--pack-format", "tfrecord", "-q"]) == 2
    assert main(["pack", str(tmp_path / "nope"), "-L", "256", "-q"]) == 2


def test_cli_run_options_reach_the_config():

    from contextsort.cli import build_parser, config_from_args

    p = build_parser()
    a = p.parse_args(["run", "x", "-o", "y", "--context-length", "4096", "--tokenizer", "tiktoken:cl100k_base", "--pack-mode", "boundary",
                      "--pack-format", "parquet", "--bos", "--drop-last", "--shard-size", "1GB", "--pack-seed", "3"])
    c = config_from_args(a).pack
    assert (c.context_length, c.tokenizer, c.mode, c.formats, c.bos, c.drop_last, c.shard_size, c.seed) == (
        4096, "tiktoken:cl100k_base", "boundary", ["parquet"], True, True, "1GB", 3)
    a = p.parse_args(["run", "x", "-o", "y"])
    assert config_from_args(a).pack.context_length is None


def test_token_stream_roundtrip(small_run, tmp_path):
    run_dir = _copy_run(small_run.run_dir, tmp_path)
    contextsort.pack_run(run_dir, context_length=64, formats=["numpy"])
    ts = TokenStream.open(run_dir / "tokens")
    assert ts.meta["dtype"] == "uint16" and len(ts.doc_off) == ts.meta["documents"] + 1
    assert int(ts.seq_len.sum()) == len(ts.tokens) == ts.meta["tokens"]


def test_packing_with_another_tokenizer_tokenizes_only_kept_documents(tmp_path):
    """Issue 12.13: duplicates and rejects are not tokenized for packing."""
    rows = _synthetic_rows(8)
    rows += [dict(rows[0], id="copy-a"), dict(rows[1], id="copy-b")]  # exact copies: removed by dedup
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    res = contextsort.run([src], tmp_path / "run", context_length=128, tokenizer="tiktoken:cl100k_base",
                          pack_format=["numpy"], report=False)
    st = res.manifest["stages"]["tokenize_pack"]
    assert res.counts["duplicates"] >= 2
    assert st["documents_tokenized"] == res.counts["kept"] and st["documents_skipped"] == res.counts["duplicates"]
    assert res.metrics["pack"]["documents"] == res.counts["kept"] and res.metrics["pack"]["adds_up"]
