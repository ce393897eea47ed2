"""How many BBC document pairs fall in each cosine band (default embedder), to choose
the dedup threshold: exact duplicates sit at 1.0, rewritten versions of the same story
just below, distinct stories on the same subject lower down.

Prints JSON: exact-duplicate count (byte-identical texts), and per threshold the number
of kNN pairs at or above it and the documents dedup would remove. `--show BAND_LO BAND_HI`
also prints the titles of the pairs in that band, for inspection.

    python benchmarks/dedup_threshold.py
"""

from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np

from contextsort.dedup import find_duplicates
from contextsort.embed import get_embedder
from contextsort.neighbors import knn_graph
from contextsort.sample import bbc_news_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", type=float, nargs=2, default=None)
    a = ap.parse_args()
    texts = []
    for p in sorted(bbc_news_path().rglob("*.txt")):
        try:
            texts.append(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            pass
    hashes = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    exact = len(hashes) - len(set(hashes))
    emb = get_embedder("wordllama").encode(texts)
    ids, sims, _ = knn_graph(emb, k=10)
    pairs = {}
    for i in range(len(ids)):
        for j, s in zip(ids[i], sims[i]):
            if j >= 0:
                pairs[(min(i, int(j)), max(i, int(j)))] = float(s)
    vals = np.array(list(pairs.values()))
    out = {"documents": len(texts), "exact_duplicate_documents": exact, "thresholds": []}
    for t in (0.9, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99, 0.999):
        removed = int((find_duplicates(ids, sims, threshold=t) >= 0).sum())
        out["thresholds"].append({"threshold": t, "pairs_at_or_above": int((vals >= t).sum()), "documents_removed": removed})
    if a.show:
        lo, hi = a.show
        out["pairs"] = [
            [round(s, 4), texts[i].split("\n", 1)[0], texts[j].split("\n", 1)[0]]
            for (i, j), s in sorted(pairs.items(), key=lambda kv: -kv[1])
            if lo <= s < hi
        ]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
