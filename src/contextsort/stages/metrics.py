"""metrics: how good the order is (adjacent_similarity, path_weight against its bound,
label_agreement), each beside the same figure for a random order of the same documents."""

from __future__ import annotations

import numpy as np

from ..atomic import atomic_write, write_json
from ..corpus import DocStore
from ..graph import graph_from_knn
from ..metrics import (STEPS_FILE, adjacent_similarities_along, bound_method, forest_iterations, label_agreement,
                       order_digest, path_bound, path_bound_two_best, path_edge_weights, path_weight_of)
from ..pipeline import RunContext, Stage
from .embed import embedding_rows
from .order import kept_graph


def mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


class MetricsStage(Stage):
    name = "metrics"
    version = 2  # writes steps.npz
    reads = ("seed",)
    consumes = ("order", "knn", "dup_of", "embeddings", "store")

    def produces(self, cfg):
        return {"metrics": ["metrics.json", STEPS_FILE]}

    def run(self, ctx: RunContext) -> dict:
        seed = ctx.cfg.seed
        order = np.load(ctx.path("order.npy"))
        random_order = np.random.default_rng(seed).permutation(order)

        rows = embedding_rows(ctx)  # read chunk by chunk: the file stays out of the RSS
        adjacent = adjacent_similarities_along(rows, order)
        adjacent_random = adjacent_similarities_along(rows, random_order)
        values: dict = {"adjacent_similarity": {"ordered": mean(adjacent), "random": mean(adjacent_random)}}
        kept, k_ids, k_sims = kept_graph(ctx)
        graph = graph_from_knn(k_ids, k_sims)
        del k_ids, k_sims
        pos = np.full(len(rows), -1, dtype=np.int64)
        pos[kept] = np.arange(len(kept))
        local = pos[order]
        steps = path_edge_weights(graph, local)
        steps_random = path_edge_weights(graph, pos[random_order])
        # the report draws these per-step figures (at 1M, recomputing them took it 8 s)
        with atomic_write(ctx.path(STEPS_FILE)) as fh:
            np.savez(fh, order_digest=np.array(order_digest(order)), seed=np.array(seed), adjacent=adjacent,
                     adjacent_random=adjacent_random, steps=steps, steps_random=steps_random)
        pw = path_weight_of(steps)
        # the tighter of the forest (Lagrangian) and two-best bounds (two-best alone on huge
        # graphs); the order's own weight steers the forest bound's steps
        bound = path_bound(graph, target=pw["sum"])
        two_best = path_bound_two_best(graph)  # the bound used before, kept beside it
        method = bound_method(graph)
        values["path_weight"] = {**pw, "bound": bound, "ratio": pw["sum"] / bound if bound else 0.0,
                                 "path_bound_two_best": two_best,
                                 "ratio_two_best": pw["sum"] / two_best if two_best else 0.0,
                                 "bound_method": method,
                                 "bound_iterations": forest_iterations(graph.n_edges) if method == "forest" else 0}
        store = DocStore(ctx.path("store"))
        if store.label_codes is not None:
            values["label_agreement"] = label_agreement(store.label_codes, order, seed=seed)
        rep = ctx.record("order").get("repeats")
        if rep:
            values["repeats"] = rep
        write_json(ctx.path("metrics.json"), values)
        return {"values": values}
