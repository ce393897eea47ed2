"""Dedup with and without chaining on an existing run's kNN lists; prints JSON.

Compares contextsort's SemDeDup walk (dedup.find_duplicates) with the connected-
components dedup it replaced (the first document of a component kept, the others
naming it), at several thresholds. For each: documents removed, and how many removed
documents are below the threshold against the document they name (cosine of their
embeddings): chaining shows up there.

    PYTHONPATH=src python -m contextsort.cli demo -o /tmp/ti-demo -q
    PYTHONPATH=src python benchmarks/dedup_chaining.py --run-dir /tmp/ti-demo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from contextsort.dedup import find_duplicates  # noqa: E402


def components_dedup(ids: np.ndarray, sims: np.ndarray, threshold: float, hashes: np.ndarray) -> np.ndarray:
    """The old rule: near-duplicate and equal-hash edges form components; the first member is kept."""
    n = len(ids)
    rows, cols = np.nonzero((ids >= 0) & (sims >= threshold))
    a, b = rows, ids[rows, cols]
    order = np.argsort(hashes, kind="stable")
    same = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])
    a = np.r_[a, order[same]]
    b = np.r_[b, order[same + 1]]
    _, label = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    first = np.full(label.max() + 1, n)
    np.minimum.at(first, label, np.arange(n))
    named = first[label]
    return np.where(named != np.arange(n), named, -1)


def summary(dup_of: np.ndarray, emb: np.ndarray, threshold: float) -> dict:
    removed = np.flatnonzero(dup_of >= 0)
    cos = np.einsum("ij,ij->i", emb[removed], emb[dup_of[removed]]) if len(removed) else np.empty(0)
    below = cos < threshold - 1e-6
    return {"removed": int(len(removed)), "below_threshold_vs_named": int(below.sum()),
            "min_similarity_to_named": round(float(cos.min()), 4) if len(cos) else None,
            "named_is_kept": bool((dup_of[dup_of[removed]] < 0).all()) if len(removed) else True}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--thresholds", default="0.97,0.95,0.9,0.85,0.8")
    a = ap.parse_args()
    d = Path(a.run_dir)
    ids, sims = np.load(d / "dedup_ids.npy"), np.load(d / "dedup_sims.npy")
    emb = np.load(d / "embeddings.npy").astype(np.float32)
    hashes = np.load(d / "store" / "text_hash.npy")
    out = {"run_dir": str(d), "documents": int(len(ids)), "k": int(ids.shape[1]), "results": []}
    for t in map(float, a.thresholds.split(",")):
        out["results"].append({"threshold": t, "semdedup_walk": summary(find_duplicates(ids, sims, t, hashes), emb, t),
                               "components": summary(components_dedup(ids, sims, t, hashes), emb, t)})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
