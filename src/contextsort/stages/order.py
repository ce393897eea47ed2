"""order: walk the graph of the kept documents (each once): the whole merged graph while it fits
(distributed.partition.GLOBAL_WALK_MAX_DOCS), else one task per partition."""

from __future__ import annotations

import numpy as np

from ..atomic import save_npy
from ..distributed.partition import check_order, partitioned_order, walks_per_partition
from ..graph import graph_from_knn, restrict_knn
from ..order import compute_order, is_permutation_order, order_inputs
from ..pipeline import RunContext, Stage
from .embed import load_embeddings, load_valid
from .partition import load_partitions


def kept_graph(ctx: RunContext):
    """(kept store positions, their kNN lists renumbered 0..n_kept-1): the graph every order walks."""
    dup_of = np.load(ctx.path("dup_of.npy"))
    keep = (dup_of < 0) & load_valid(ctx)  # documents without a usable embedding were rejected
    ids = np.load(ctx.path("knn_ids.npy"), mmap_mode="r")
    sims = np.load(ctx.path("knn_sims.npy"), mmap_mode="r")
    k_ids, k_sims = restrict_knn(ids, sims, dup_of, keep)
    return np.flatnonzero(keep), k_ids, k_sims


class OrderStage(Stage):
    name = "order"
    version = 2  # partitioned runs walk the merged graph while it fits
    reads = ("order", "seed")
    consumes = ("knn", "dup_of", "embeddings", "partitions")

    def produces(self, cfg):
        extra = [] if is_permutation_order(cfg.order.algorithm) else ["order_counts.npy"]
        return {"order": ["order.npy", *extra]}

    def run(self, ctx: RunContext) -> dict:
        oc = ctx.cfg.order
        kept, k_ids, k_sims = kept_graph(ctx)
        emb = load_embeddings(ctx)
        parts = load_partitions(ctx)
        per_partition = parts is not None and walks_per_partition(len(kept))
        if per_partition:
            local = partitioned_order(k_ids, k_sims, kept, parts, oc.algorithm, ctx.cfg.seed, ctx.cfg.knn.k, emb,
                                      ctx.engine.map)
        else:
            emb_kept = np.asarray(emb[kept]) if "emb" in order_inputs(oc.algorithm) else None
            local = compute_order(oc.algorithm, graph_from_knn(k_ids, k_sims), seed=ctx.cfg.seed, knn_ids=k_ids,
                                  emb=emb_kept, clusters=oc.clusters, neighbors=oc.knn_neighbors)
        order = kept[local]
        info: dict = {"algorithm": oc.algorithm, "walk": "per partition" if per_partition else "global"}
        if is_permutation_order(oc.algorithm):
            keep = np.zeros(len(load_valid(ctx)), dtype=bool)
            keep[kept] = True
            check_order(order, keep)
        else:
            # e.g. the kNN baseline: documents repeat; say how often each one appears
            appear = np.bincount(local, minlength=len(kept))
            per_doc = np.zeros(len(load_valid(ctx)), dtype=np.int64)
            per_doc[kept] = appear
            save_npy(ctx.path("order_counts.npy"), per_doc)
            info["repeats"] = {"rows": int(len(order)), "documents": int(len(kept)),
                               "min": int(appear.min()) if len(kept) else 0, "max": int(appear.max()) if len(kept) else 0,
                               "mean": float(appear.mean()) if len(kept) else 0.0, "counts_file": "order_counts.npy"}
        save_npy(ctx.path("order.npy"), order)
        return info
