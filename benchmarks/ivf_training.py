"""k-means iterations (and training points, nprobe) of the mid-size IVF index (20k-50k
documents), against recall@10: chosen on one corpus, checked on another; JSON out.

The tuning corpus is `throughput.py`'s BBC windows (31k). The held-out one is new to this
choice: every GNU info manual of `corpora.py` and the Jargon File, concatenated per source
and cut the same way (120-word windows every 24 words, label = the source; 39k documents).
Each corpus is embedded by a default `contextsort run`; then, on its embeddings, FAISS
IVF-Flat (nlist 4 sqrt(N), 2 threads) is trained and searched as the neighbors stage does,
for each setting, and scored against exact search on 3,000 sampled documents:

- `grid`: train / add+search seconds (fastest of 2) and recall@10 (ids; and counting ties
  with the exact 10th similarity) for (training points per list, iterations, nprobe);
- `seeds`: recall@10 for 10 and 5 iterations under 5 k-means seeds (the seed-to-seed spread
  is the noise a setting's change must be compared with).

    PYTHONPATH=src python benchmarks/ivf_training.py [--work DIR] > ivf_training.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

GRID = [(39, 10, 32), (39, 5, 32), (39, 4, 32), (39, 3, 32), (20, 5, 32), (39, 10, 24), (39, 5, 24)]
SEEDS = [1, 2, 3, 4, 1234]
MANUALS = ["as", "autoconf", "bash", "binutils", "coreutils", "diffutils", "find", "grep", "gzip", "jargon", "ld", "m4",
           "screen", "sed", "sharutils", "wget"]


def manuals_windows(path: Path, words: int = 120, stride: int = 24) -> int:
    import corpora

    n = 0
    with open(path, "w", encoding="utf-8") as out:
        for name in MANUALS:
            w = [x for r in corpora.load(name) for x in r["text"].split()]
            for s in range(0, max(1, len(w) - words // 2), stride):
                out.write(json.dumps({"id": n, "label": name, "text": " ".join(w[s:s + words])}) + "\n")
                n += 1
    return n


def embeddings_of(corpus: Path, run: Path) -> np.ndarray:
    subprocess.run([sys.executable, "-m", "contextsort.cli", "run", str(corpus), "-o", str(run), "-q"], check=True,
                   capture_output=True)
    return np.load(run / "embeddings.npy").astype(np.float32)


def ivf(emb: np.ndarray, per_list: int, niter: int, nprobe: int, seed: int):
    import faiss

    n, d = emb.shape
    nlist = min(int(round(4 * np.sqrt(n))), n // 39)
    idx = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    idx.cp.seed, idx.cp.niter, idx.cp.min_points_per_centroid = seed, niter, 1
    rng = np.random.default_rng(seed)
    train = emb[np.sort(rng.choice(n, min(n, per_list * nlist), replace=False))]
    t0 = time.perf_counter()
    idx.train(train)
    t1 = time.perf_counter()
    idx.add(emb)
    idx.nprobe = nprobe
    return idx, t1 - t0, t1


def score(q: np.ndarray, exact_sims, exact_ids, sims, ids) -> tuple[float, float]:
    hit = tie = 0
    for row, (i, e, es) in enumerate(zip(q, exact_ids, exact_sims)):
        want, kth = e[e != i][:10], es[e != i][9]
        got = ids[row][ids[row] != i][:10]
        got_s = sims[row][ids[row] != i][:10]
        hit += len(set(want) & set(got))
        tie += int((got_s >= kth - 1e-6).sum())
    return round(hit / (10 * len(q)), 4), round(tie / (10 * len(q)), 4)


def measure(emb: np.ndarray) -> dict:
    import faiss

    faiss.omp_set_num_threads(2)
    q = np.sort(np.random.default_rng(0).choice(len(emb), 3000, replace=False))
    flat = faiss.IndexFlatIP(emb.shape[1])
    flat.add(emb)
    exact_sims, exact_ids = flat.search(emb[q], 11)
    grid = []
    for per, niter, nprobe in GRID:
        times = []
        for _ in range(2):
            idx, train_s, t1 = ivf(emb, per, niter, nprobe, 1234)
            sims, ids = idx.search(emb, 11)
            times.append((train_s, time.perf_counter() - t1))
        rec, ties = score(q, exact_sims, exact_ids, sims[q], ids[q])
        grid.append({"train_per_list": per, "niter": niter, "nprobe": nprobe, "train_s": round(min(t[0] for t in times), 3),
                     "add_search_s": round(min(t[1] for t in times), 3), "recall_at_10": rec, "recall_at_10_ties": ties})
    seeds = {}
    for niter in (10, 5):
        r = []
        for seed in SEEDS:
            idx, _, _ = ivf(emb, 39, niter, 32, seed)
            sims, ids = idx.search(emb[q], 11)
            r.append(score(q, exact_sims, exact_ids, sims, ids)[0])
        seeds[str(niter)] = {"recall_at_10": r, "mean": round(statistics.mean(r), 4), "sd": round(statistics.pstdev(r), 4)}
    return {"documents": len(emb), "grid": grid, "seeds": seeds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    from throughput import build_corpus

    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        out = {}
        for name, build in (("bbc_windows (tuning)", build_corpus), ("manuals_windows (held out)", manuals_windows)):
            corpus = work / f"{name.split()[0]}.jsonl"
            build(corpus)
            out[name] = measure(embeddings_of(corpus, work / f"{name.split()[0]}_run"))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
