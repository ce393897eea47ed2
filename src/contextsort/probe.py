"""Probe: the paper's claim in miniature, on the user's own run.

Two identical tiny causal LMs are trained on the same training documents and tokens; they
differ only in the order of the documents before packing (*standard*: seeded random order;
*ordered*: the run's order). Each is then asked how much a related preceding document helps:
for every held-out document B, the NLL of B's first T tokens after its nearest held-out
neighbour A (by the run's embeddings) is compared with the NLL after a random held-out
document R. ``gain = nll_random - nll_related``; the answer is ``gain_difference`` =
ordered gain - standard gain, per pair, with a bootstrap interval, over several seeds.

Each seed redraws the held-out split, the random order, the context shuffle, the random
partners R and the (shared) initialisation. torch is an optional extra (`probe`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .corpus import DocStore
from .pack import encode_with_separators, plan_concat
from .tokenizer import get_tokenizer
from .errors import ContextsortError, DependencyMissing
from .atomic import commit

PAD = -1  # padding in context arrays (same value as probe_model.PAD)
HOLDOUT = 0.1
BLOCK_DOCS = 64  # a --tokens budget below one pass keeps random runs of this many consecutive documents


class ProbeUnavailable(DependencyMissing):
    """torch is not installed (pip install 'contextsort[probe]')."""


class ProbeError(ContextsortError):
    """The run directory cannot be probed (missing artifacts, too few documents, bad option)."""


def load_torch():
    """The torch module, or ProbeUnavailable with the install hint."""
    try:
        import torch
    except ImportError as e:
        raise ProbeUnavailable("the probe needs torch: pip install 'contextsort[probe]' (CPU wheel: pip install torch)") from e
    return torch


# --------------------------------------------------------------------------------------
# data: documents, split, streams, evaluation pairs (numpy only)
# --------------------------------------------------------------------------------------


@dataclass
class Corpus:
    """The kept documents of a run, tokenised once: document p (a store position) has tokens
    ``ids[off[rank[p]]:off[rank[p]+1]]`` (its text's ids then EOS)."""

    order: np.ndarray  # store positions of kept docs, in the run's order
    ids: np.ndarray  # int64, all kept documents' tokens, in `order`
    off: np.ndarray  # int64 [len(order)+1]
    rank: dict  # store position -> index into `order`
    embeddings: np.ndarray  # float32 [N_store, d], unit norm
    valid: np.ndarray  # bool [N_store]: has an embedding
    eos_id: int

    def tokens(self, p: int) -> np.ndarray:
        r = self.rank[int(p)]
        return self.ids[self.off[r] : self.off[r + 1]]

    def length(self, p: int) -> int:
        r = self.rank[int(p)]
        return int(self.off[r + 1] - self.off[r])


def read_run(run_dir: Path, tokenizer: str = "llama2") -> Corpus:
    """Read a finished run's order, embeddings and store; tokenise its kept documents."""
    run_dir = Path(run_dir)
    need = ["manifest.json", "order.npy", "embeddings.npy", "store"]
    missing = [n for n in need if not (run_dir / n).exists()]
    if missing:
        raise ProbeError(f"{run_dir}: not a finished run (missing {', '.join(missing)}); run `contextsort run` first")
    order = np.load(run_dir / "order.npy").astype(np.int64)
    emb = np.load(run_dir / "embeddings.npy", mmap_mode="r")
    store = DocStore(run_dir / "store")
    if len(emb) != len(store):
        raise ProbeError(f"{run_dir}/embeddings.npy has {len(emb)} rows for {len(store)} stored documents")
    if len(np.unique(order)) != len(order) or (len(order) and (order.min() < 0 or order.max() >= len(store))):
        raise ProbeError(f"{run_dir}/order.npy is not a set of store positions")
    valid_path = run_dir / "embed_valid.npy"
    valid = np.load(valid_path) if valid_path.exists() else np.ones(len(store), dtype=bool)
    tok = get_tokenizer(tokenizer)
    ids, seq = encode_with_separators(tok, [store.text(int(p)) for p in order], False, np.int64)
    off = np.concatenate([[0], np.cumsum(seq)]).astype(np.int64)
    rank = {int(p): r for r, p in enumerate(order)}
    return Corpus(order, ids, off, rank, np.asarray(emb, dtype=np.float32), valid, int(tok.eos_id))


def split_holdout(order: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) store positions, each in the run's order; a seeded `fraction` is held out."""
    n_held = int(round(len(order) * fraction))
    held = np.zeros(len(order), dtype=bool)
    held[rng.choice(len(order), n_held, replace=False)] = True
    return order[~held], order[held]


def budget_docs(train: np.ndarray, corpus: Corpus, tokens: int | None, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """The training documents (run order) and passes that a `tokens` budget buys: all of them
    and ``tokens // one pass`` passes (at least 1) when the budget covers a pass, else random
    runs of BLOCK_DOCS (fewer on a small corpus) consecutive training documents of the order until it is covered."""
    total = int(sum(corpus.length(p) for p in train))
    if tokens is None or tokens >= total:
        return train, max(1, (tokens or total) // max(1, total))
    size = max(1, min(BLOCK_DOCS, len(train) // 10))  # at least ten runs to draw from on a small corpus
    blocks = [train[s : s + size] for s in range(0, len(train), size)]
    keep, got = [], 0
    for b in rng.permutation(len(blocks)):
        if got >= tokens:
            break
        keep.append(int(b))
        got += int(sum(corpus.length(p) for p in blocks[b]))
    return np.concatenate([blocks[b] for b in sorted(keep)]), 1


def concat_tokens(docs: np.ndarray, corpus: Corpus) -> np.ndarray:
    """The documents' tokens one after another (the stream that `concat` packing cuts)."""
    if not len(docs):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([corpus.tokens(p) for p in docs])


def cut_contexts(stream: np.ndarray, L: int) -> np.ndarray:
    """[C, L] contexts of `stream` cut every L tokens (pack.plan_concat), last one PAD-padded."""
    plan = plan_concat(len(stream), L)
    out = np.full((len(plan), L), PAD, dtype=np.int64)
    for c, (s, n) in enumerate(zip(plan.start.tolist(), plan.length.tolist())):
        out[c, :n] = stream[s : s + n]
    return out


@dataclass
class Streams:
    """The two training streams of one seed, as document sequences and shuffled contexts."""

    train_docs: np.ndarray  # the training documents (run order)
    held_docs: np.ndarray  # held-out documents (run order)
    standard_docs: np.ndarray  # training documents in seeded random order
    ordered_docs: np.ndarray  # training documents in the run's order
    standard: np.ndarray  # [C*passes, L] contexts in training order (passes stacked)
    ordered: np.ndarray
    passes: int


def build_streams(corpus: Corpus, L: int, seed: int, tokens: int | None = None, holdout: float = HOLDOUT) -> Streams:
    """Split, order, pack and shuffle both streams of one seed, and check that they hold exactly
    the same multiset of tokens and no held-out document (ProbeError otherwise: a bug)."""
    rng = np.random.default_rng(seed)
    train, held = split_holdout(corpus.order, holdout, rng)
    train, passes = budget_docs(train, corpus, tokens, rng)
    standard_docs = train[rng.permutation(len(train))]
    ordered_docs = train
    s_ctx, o_ctx = cut_contexts(concat_tokens(standard_docs, corpus), L), cut_contexts(concat_tokens(ordered_docs, corpus), L)
    s_all, o_all = [], []
    for _ in range(passes):  # each pass shuffles the contexts again; both streams use the same permutation
        perm = rng.permutation(len(s_ctx))
        s_all.append(s_ctx[perm])
        o_all.append(o_ctx[perm])
    streams = Streams(train, held, standard_docs, ordered_docs, np.concatenate(s_all), np.concatenate(o_all), passes)
    check_streams(streams)
    return streams


def check_streams(s: Streams) -> None:
    """Both streams: the same documents, no held-out one, the same multiset of tokens."""
    held = set(s.held_docs.tolist())
    for name, docs in (("standard", s.standard_docs), ("ordered", s.ordered_docs)):
        if held & set(docs.tolist()):
            raise ProbeError(f"{name} stream contains held-out documents")
        if sorted(docs.tolist()) != sorted(s.train_docs.tolist()):
            raise ProbeError(f"{name} stream does not hold exactly the training documents")
    a, b = s.standard[s.standard != PAD], s.ordered[s.ordered != PAD]
    if len(a) != len(b) or not np.array_equal(np.sort(a), np.sort(b)):
        raise ProbeError("the two training streams do not hold the same multiset of tokens")


def stream_checks(s: Streams) -> dict:
    """The recorded form of check_streams: token multisets equal, held-out documents in the streams."""
    held = set(s.held_docs.tolist())
    a, b = s.standard[s.standard != PAD], s.ordered[s.ordered != PAD]
    return {"same_token_multiset": bool(len(a) == len(b) and np.array_equal(np.sort(a), np.sort(b))),
            "heldout_in_streams": len(held & set(s.standard_docs.tolist())) + len(held & set(s.ordered_docs.tolist()))}


def eval_pairs(held: np.ndarray, corpus: Corpus, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, A, R) store positions: every held-out B with an embedding, A its nearest held-out
    neighbour by cosine similarity, R a random held-out document other than B and A."""
    cand = held[corpus.valid[held]]
    if len(cand) < 3:
        raise ProbeError(f"only {len(cand)} held-out documents with embeddings; the probe needs at least 3 (a larger corpus)")
    e = corpus.embeddings[cand]
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    a_idx = sim.argmax(axis=1)
    r_idx = np.empty(len(cand), dtype=np.int64)
    for i, a in enumerate(a_idx.tolist()):
        while True:
            r = int(rng.integers(len(cand)))
            if r != i and r != a:
                break
        r_idx[i] = r
    return cand, cand[a_idx], cand[r_idx]


def pair_sequences(corpus: Corpus, B: np.ndarray, A: np.ndarray, R: np.ndarray, L: int, T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sequences ``prefix + EOS + B`` for prefix A (rows 0..n-1) and R (rows n..2n-1), PAD-padded
    to L. Both prefixes are the last P tokens of their document's text, P = min(both lengths,
    L - 1 - T), so B sits at the same positions after either. Returns (seqs, first scored
    column of the NLL matrix, number of scored tokens = min(T, len(B)))."""
    n = len(B)
    seqs = np.full((2 * n, L), PAD, dtype=np.int64)
    start = np.zeros(2 * n, dtype=np.int64)
    count = np.zeros(2 * n, dtype=np.int64)
    for i in range(n):
        b = corpus.tokens(B[i])[:-1][:T]  # B's text tokens (no EOS), the first T
        a_txt, r_txt = corpus.tokens(A[i])[:-1], corpus.tokens(R[i])[:-1]
        P = min(len(a_txt), len(r_txt), L - 1 - T)
        for row, txt in ((i, a_txt), (n + i, r_txt)):
            prefix = txt[len(txt) - P :] if P else txt[:0]
            seq = np.concatenate([prefix, [corpus.eos_id], b])
            seqs[row, : len(seq)] = seq
            start[row], count[row] = P, len(b)  # column j of the NLL matrix scores token j+1
    return seqs, start, count


def scored_mean(nll: np.ndarray, start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Mean NLL of each row over columns [start, start+count) of a per-token NLL matrix."""
    out = np.empty(len(nll), dtype=np.float64)
    for i in range(len(nll)):
        out[i] = nll[i, start[i] : start[i] + count[i]].mean() if count[i] else np.nan
    return out


def bootstrap_ci(per_seed: list[np.ndarray], rng: np.random.Generator, n_boot: int = 2000) -> tuple[float, float]:
    """95% percentile interval of the mean over seeds of per-seed pair means, resampling the
    pairs within each seed."""
    stats = np.zeros(n_boot)
    for x in per_seed:
        x = x[np.isfinite(x)]
        idx = rng.integers(0, len(x), size=(n_boot, len(x)))
        stats += x[idx].mean(axis=1)
    stats /= len(per_seed)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------
# the probe
# --------------------------------------------------------------------------------------


def shrink_vocab(train_tokens: np.ndarray, eos_id: int) -> tuple[np.ndarray, int]:
    """A map tokenizer id -> small id: the ids seen in training, most frequent first (the
    adaptive softmax wants that), then one unknown id for everything else."""
    ids, counts = np.unique(np.concatenate([train_tokens, [eos_id]]), return_counts=True)
    seen = ids[np.argsort(-counts, kind="stable")]
    size = int(max(int(train_tokens.max(initial=0)), eos_id)) + 1
    unk = len(seen)
    table = np.full(size, unk, dtype=np.int64)
    table[seen] = np.arange(len(seen))
    return table, unk + 1


def remap(table: np.ndarray, unk: int, x: np.ndarray) -> np.ndarray:
    """Tokenizer ids -> small ids (PAD kept, ids beyond the table -> unknown)."""
    out = np.full(x.shape, unk, dtype=np.int64)
    inside = (x >= 0) & (x < len(table))
    out[inside] = table[x[inside]]
    out[x == PAD] = PAD
    return out


def run_probe(
    run_dir: str | Path,
    *,
    seeds: int = 3,
    tokens: int | None = None,
    layers: int = 2,
    width: int = 128,
    heads: int = 4,
    context_length: int = 512,
    score_tokens: int = 128,
    batch_size: int = 8,
    lr: float = 2e-3,
    holdout: float = HOLDOUT,
    device: str = "cpu",
    threads: int | None = None,
    tokenizer: str = "llama2",
    write: bool = True,
    progress: bool = True,
) -> dict:
    """Train the two tiny LMs per seed, score the evaluation pairs, write RUN_DIR/probe.json
    (unless ``write=False``) and return its content. See the module docstring."""
    torch = load_torch()
    from . import probe_model

    L, T = int(context_length), int(score_tokens)
    if L < 8 or not 1 <= T <= L // 2:
        raise ProbeError(f"need context_length >= 8 and 1 <= score_tokens <= context_length/2, got {L} and {T}")
    if seeds < 1 or layers < 1 or width < 1 or width % heads or batch_size < 1 or not 0 < holdout < 1:
        raise ProbeError("seeds, layers, width, batch_size must be >= 1, width a multiple of heads, 0 < holdout < 1")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ProbeError(f"--device {device}: torch sees no CUDA device")
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    n_threads = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n_threads)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    try:
        corpus = read_run(run_dir, tokenizer)
        seconds_read = time.perf_counter() - t0
        per_seed = []
        for s in range(seeds):
            per_seed.append(probe_one_seed(torch, probe_model, corpus, s, L, T, tokens, layers, width, heads, batch_size, lr, holdout, device, progress))
            result = summarise(per_seed)
            result["config"] = config_record(locals(), corpus, per_seed, seconds_read, time.perf_counter() - t0)
            if write:  # after every seed, so that a long probe leaves its finished seeds behind
                tmp = run_dir / "probe.json.tmp"
                tmp.write_text(json.dumps(result, indent=2))
                commit(tmp, run_dir / "probe.json")
    finally:
        torch.set_num_threads(old_threads)
    return result


def config_record(a: dict, corpus: Corpus, per_seed: list[dict], seconds_read: float, seconds: float) -> dict:
    """probe.json's "config": the settings of run_probe (its locals `a`) and the sizes measured."""
    return {
        "run_dir": str(a["run_dir"]), "seeds": a["seeds"], "seeds_done": len(per_seed), "tokens": a["tokens"],
        "layers": a["layers"], "width": a["width"], "heads": a["heads"], "context_length": a["L"], "score_tokens": a["T"],
        "batch_size": a["batch_size"], "lr": a["lr"], "holdout": a["holdout"], "device": a["device"], "threads": a["n_threads"],
        "tokenizer": a["tokenizer"], "optimizer": "AdamW(0.9, 0.95, wd 0.1), 5% warm-up, cosine to 10%, clip 1.0",
        "kept_documents": int(len(corpus.order)), "corpus_tokens": int(len(corpus.ids)),
        "train_tokens": per_seed[0]["train_tokens"], "passes": per_seed[0]["passes"],
        "vocab": per_seed[0]["vocab"], "parameters": per_seed[0]["parameters"],
        "seconds_read": round(seconds_read, 2), "seconds": round(seconds, 2),
    }


def probe_one_seed(torch, pm, corpus: Corpus, seed: int, L: int, T: int, tokens, layers, width, heads, batch_size, lr, holdout, device, progress) -> dict:
    """Both models of one seed: per-pair NLLs, held-out NLLs, the checks and the sizes."""
    t = time.perf_counter()
    streams = build_streams(corpus, L, seed, tokens, holdout)
    rng = np.random.default_rng([seed, 1])
    B, A, R = eval_pairs(streams.held_docs, corpus, rng)
    table, vocab = shrink_vocab(streams.ordered[streams.ordered != PAD], corpus.eos_id)
    unk = vocab - 1
    seqs, start, count = pair_sequences(corpus, B, A, R, L, T)
    seqs = remap(table, unk, seqs)
    held_random = corpus_contexts(streams.held_docs[rng.permutation(len(streams.held_docs))], corpus, L, table, unk)
    held_ordered = corpus_contexts(streams.held_docs, corpus, L, table, unk)
    n = len(B)
    out = {"seed": seed, "pairs": n, "train_tokens": int((streams.ordered != PAD).sum()), "passes": streams.passes, "vocab": vocab,
           "train_documents": int(len(streams.train_docs)), "heldout_documents": int(len(streams.held_docs)),
           "unknown_share_heldout": float((held_ordered[held_ordered != PAD] == unk).mean()),
           "checks": stream_checks(streams)}
    eval_batch = max(1, 2 * batch_size)
    for name, ctx, own in (("standard", streams.standard, held_random), ("ordered", streams.ordered, held_ordered)):
        torch.manual_seed(seed)  # the same initialisation for both models
        model = pm.TinyLM(vocab, width, layers, heads, L)
        out["parameters"] = int(sum(p.numel() for p in model.parameters()))
        loss = pm.train(model, remap(table, unk, ctx), batch_size, lr, device, f"probe seed {seed} {name}", progress)
        nll = scored_mean(pm.sequence_nll(model, seqs, eval_batch, device), start, count)
        out[name] = {"nll_related": nll[:n], "nll_random": nll[n:], "train_loss_final": loss,
                     "heldout_nll": float(np.nanmean(pm.sequence_nll(model, own, eval_batch, device)))}
        del model
    out["seconds"] = round(time.perf_counter() - t, 2)
    return out


def corpus_contexts(docs: np.ndarray, corpus: Corpus, L: int, table: np.ndarray, unk: int) -> np.ndarray:
    """Evaluation contexts: `docs` concatenated in the given order, cut every L tokens, remapped."""
    return remap(table, unk, cut_contexts(concat_tokens(docs, corpus), L))


def summarise(per_seed: list[dict]) -> dict:
    """probe.json's content (without config): per model, per seed and over seeds."""
    rng = np.random.default_rng(12345)
    result: dict = {}
    gains = {}
    for name in ("standard", "ordered"):
        rows = []
        gains[name] = [r[name]["nll_random"] - r[name]["nll_related"] for r in per_seed]
        for r, g in zip(per_seed, gains[name]):
            m = r[name]
            rows.append({"seed": r["seed"], "nll_related": float(np.nanmean(m["nll_related"])), "nll_random": float(np.nanmean(m["nll_random"])),
                         "gain": float(np.nanmean(g)), "heldout_nll": m["heldout_nll"],
                         "train_loss_final": m["train_loss_final"]})
        result[name] = {k: float(np.mean([row[k] for row in rows])) for k in ("nll_related", "nll_random", "gain", "heldout_nll", "train_loss_final")}
        result[name]["gain_ci95"] = list(bootstrap_ci(gains[name], rng))
        result[name]["per_seed"] = rows
    diffs = [o - s for o, s in zip(gains["ordered"], gains["standard"])]
    seed_means = [float(np.nanmean(d)) for d in diffs]
    result["gain_difference"] = {
        "mean": float(np.mean(seed_means)),
        "ci95": list(bootstrap_ci(diffs, rng)),
        "per_seed": [{"seed": r["seed"], "mean": m, "ci95": list(bootstrap_ci([d], rng)), "pairs": r["pairs"]} for r, m, d in zip(per_seed, seed_means, diffs)],
        "seed_std": float(np.std(seed_means, ddof=1)) if len(seed_means) > 1 else 0.0,
        "seed_min": float(min(seed_means)), "seed_max": float(max(seed_means)),
        "pairs": int(sum(r["pairs"] for r in per_seed)),
    }
    result["checks"] = {
        "same_token_multiset": all(r["checks"]["same_token_multiset"] for r in per_seed),
        "heldout_in_streams": int(sum(r["checks"]["heldout_in_streams"] for r in per_seed)),
    }
    result["seeds"] = [{k: r[k] for k in ("seed", "pairs", "train_documents", "heldout_documents", "train_tokens", "unknown_share_heldout", "seconds")} for r in per_seed]
    return result


def summary_line(result: dict) -> str:
    """One plain line: both gains, the difference with its interval, the seed spread."""
    g, s, o, c = result["gain_difference"], result["standard"], result["ordered"], result["config"]
    lo, hi = g["ci95"]
    verdict = "ordered gains more" if lo > 0 else ("standard gains more" if hi < 0 else "no clear difference")
    return (
        f"probe: {c['seeds']} seeds x {c['train_tokens']} training tokens per model: gain from a related document "
        f"ordered {o['gain']:.4f} vs standard {s['gain']:.4f} nats/token; gain_difference {g['mean']:+.4f} "
        f"(95% CI {lo:+.4f} .. {hi:+.4f}; seeds {g['seed_min']:+.4f} .. {g['seed_max']:+.4f}): {verdict}"
    )
