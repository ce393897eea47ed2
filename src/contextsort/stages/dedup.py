"""dedup: near-duplicates on the dense cosine kNN (whatever signal builds the traversal
graph, so a threshold keeps its calibrated meaning) plus exact normalised-text copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import save_npy
from ..corpus import DocStore
from ..dedup import find_duplicates
from ..embed import default_dedup_threshold
from ..pipeline import RunContext, Stage
from .embed import load_valid


def dense_knn_paths(ctx: RunContext) -> tuple[Path, Path]:
    """Files of the dense cosine kNN lists at --k (dedup_*.npy; knn_*.npy in run folders written before it existed)."""
    name = "dedup" if ctx.path("dedup_ids.npy").exists() else "knn"
    return ctx.path(f"{name}_ids.npy"), ctx.path(f"{name}_sims.npy")


def dense_knn(ctx: RunContext) -> tuple[np.ndarray, np.ndarray]:
    """The dense cosine kNN lists at --k, memory-mapped."""
    ids, sims = dense_knn_paths(ctx)
    return np.load(ids, mmap_mode="r"), np.load(sims, mmap_mode="r")


def threshold_for(embedder: str, threshold: float | None) -> float:
    """The threshold given, or the one calibrated for this embedder (benchmarks/dedup_threshold.py)."""
    return float(threshold) if threshold is not None else default_dedup_threshold(embedder)


class DedupStage(Stage):
    name = "dedup"
    reads = ("dedup", "embed")
    consumes = ("knn", "store", "embeddings")

    def produces(self, cfg):
        return {"dup_of": ["dup_of.npy"]}

    def run(self, ctx: RunContext) -> dict:
        cfg = ctx.cfg.dedup
        threshold = threshold_for(ctx.cfg.embed.embedder, cfg.threshold)
        ids, sims = dense_knn(ctx)
        store = DocStore(ctx.path("store"))
        dup_of = find_duplicates(np.asarray(ids), np.asarray(sims), threshold, store.text_hash if cfg.exact else None,
                                 load_valid(ctx))
        save_npy(ctx.path("dup_of.npy"), dup_of)
        return {"duplicates": int((dup_of >= 0).sum()), "threshold": threshold,
                "threshold_source": "option" if cfg.threshold is not None else "embedder default"}
