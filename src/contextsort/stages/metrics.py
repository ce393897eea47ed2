"""metrics: how good the order is (adjacent_similarity, path_weight against its bound,
label_agreement), each beside the same figure for a random order of the same documents."""

from __future__ import annotations

import numpy as np

from ..atomic import write_json
from ..corpus import DocStore
from ..graph import graph_from_knn
from ..metrics import (adjacent_similarities_along, bound_method, forest_iterations, label_agreement,
                       path_bound, path_bound_two_best, path_weight)
from ..pipeline import RunContext, Stage
from .embed import embedding_rows
from .order import kept_graph


def mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


class MetricsStage(Stage):
    name = "metrics"
    reads = ("seed",)
    consumes = ("order", "knn", "dup_of", "embeddings", "store")

    def produces(self, cfg):
        return {"metrics": ["metrics.json"]}

    def run(self, ctx: RunContext) -> dict:
        seed = ctx.cfg.seed
        order = np.load(ctx.path("order.npy"))

        rows = embedding_rows(ctx)  # read chunk by chunk: the file stays out of the RSS
        values: dict = {
            "adjacent_similarity": {
                "ordered": mean(adjacent_similarities_along(rows, order)),
                "random": mean(adjacent_similarities_along(rows, np.random.default_rng(seed).permutation(order))),
            },
        }
        kept, k_ids, k_sims = kept_graph(ctx)
        graph = graph_from_knn(k_ids, k_sims)
        del k_ids, k_sims
        pos = np.full(len(rows), -1, dtype=np.int64)
        pos[kept] = np.arange(len(kept))
        local = pos[order]
        pw = path_weight(graph, local)
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
