"""write: the kept documents in the new order (ordered.jsonl / .parquet), every other
record in removed.jsonl with its reason, and the counts that must add up. With several
workers (engine ray) both are written as tasks per shard and joined by the driver."""

from __future__ import annotations

import numpy as np

from ..corpus import DocStore
from ..formats import write_ordered
from ..formats.removed import write_removed
from ..order import is_permutation_order
from ..pipeline import RunContext, Stage
from ..progress import progress
from ..rowfile import RowFile
from .dedup import dense_knn_paths
from .embed import load_valid


class WriteStage(Stage):
    name = "write"
    reads = ("output", "input")
    consumes = ("store", "order", "dup_of", "knn", "embeddings", "rejects")

    def produces(self, cfg):
        return {"ordered": [f"ordered.{f}" for f in cfg.output.formats], "removed": ["removed.jsonl"]}

    def run(self, ctx: RunContext) -> dict:
        cfg = ctx.cfg
        store = DocStore(ctx.path("store"))
        order = np.load(ctx.path("order.npy"))
        dup_of = np.load(ctx.path("dup_of.npy"))
        valid = load_valid(ctx)
        extra: dict = {}
        workers = ctx.engine.workers()
        if workers > 1:
            from ..formats.parallel import write_ordered_parallel

            files, extra = write_ordered_parallel(ctx.run_dir.path, store, order, cfg.output.formats, cfg.input.label_field,
                                                  ctx.engine.map, workers)
        else:
            with progress(len(order), "write") as bar:
                files, extra = write_ordered(ctx.run_dir.path, store, order, cfg.output.formats, cfg.input.label_field,
                                             progress=bar.update)
        ids, sims = (RowFile(f) for f in dense_knn_paths(ctx))  # only the duplicates' rows are read, in file order
        n_removed, removed_parts = write_removed(ctx.path("removed.jsonl"), ctx.path("store"), cfg.input.id_field, dup_of,
                                                 valid, ids, sims, ctx.path("rejects.jsonl"), ctx.engine.map, workers)
        ingest = ctx.record("ingest")
        kept = len(np.unique(order))  # equals len(order) for every order but the repeating kNN baseline
        if len(order) != kept and is_permutation_order(cfg.order.algorithm):
            raise RuntimeError("internal error: the order repeats a document")
        dups = int((dup_of >= 0).sum())
        rejected = int(ingest["rejected"]) + int((~valid & (dup_of < 0)).sum())
        read = int(ingest["records_read"])
        counts = {"records_read": read, "kept": kept, "duplicates": dups, "rejected": rejected,
                  "adds_up": kept + dups + rejected == read and n_removed == dups + rejected,
                  "coverage": kept / read if read else 0.0, "output_rows": int(len(order)), "removed_rows": n_removed}
        return {"files": files, "removed": n_removed, "removed_parts": removed_parts, "counts": counts, **extra}
