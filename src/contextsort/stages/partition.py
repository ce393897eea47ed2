"""partition: split the documents by nearest k-means centroid, so that kNN and the walk can
run as one task per partition (on Ray, or in this process). Used when --partitions > 1,
or with --engine ray and --partitions 0 (then max(workers, N / 1M) partitions)."""

from __future__ import annotations

import numpy as np

from ..atomic import save_npy
from ..distributed.partition import auto_partitions, make_partitions
from ..pipeline import RunContext, Stage
from .embed import load_embeddings, load_valid


def uses_partitions(cfg) -> bool:
    return cfg.engine.partitions > 1 or (cfg.engine.partitions == 0 and cfg.engine.name == "ray")


class PartitionStage(Stage):
    name = "partition"
    reads = ("engine", "seed")
    consumes = ("embeddings",)

    def applies(self, cfg) -> bool:
        return uses_partitions(cfg)

    def produces(self, cfg):
        return {"partitions": ["partition_assign.npy", "partition_centroids.npy"]}

    def key(self, ctx: RunContext) -> object:
        # automatic partition counts depend on the number of workers
        return {"workers": ctx.engine.workers()} if ctx.cfg.engine.partitions == 0 else None

    def run(self, ctx: RunContext) -> dict:
        emb, valid = load_embeddings(ctx), load_valid(ctx)
        count = ctx.cfg.engine.partitions or auto_partitions(int(valid.sum()), ctx.engine.workers())
        parts = make_partitions(emb, valid, count, seed=ctx.cfg.seed)
        save_npy(ctx.path("partition_assign.npy"), parts.assign)
        save_npy(ctx.path("partition_centroids.npy"), parts.centroids)
        sizes = np.bincount(parts.assign[parts.assign >= 0], minlength=parts.count)
        return {"partitions": parts.count, "sizes": {"min": int(sizes.min()), "max": int(sizes.max())}}


def load_partitions(ctx: RunContext):
    """The partitions of this run, or None when it is not partitioned."""
    from ..distributed.partition import Partitions

    if not ctx.path("partition_assign.npy").exists() or "partition" not in ctx.manifest["stages"]:
        return None
    return Partitions(np.load(ctx.path("partition_assign.npy")), np.load(ctx.path("partition_centroids.npy")))
