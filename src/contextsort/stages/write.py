"""write: the kept documents in the new order (ordered.jsonl / .parquet), every other
record in removed.jsonl with its reason, and the counts that must add up."""

from __future__ import annotations

import json

import numpy as np

from ..atomic import write_jsonl
from ..corpus import DocStore
from ..formats import write_ordered
from ..order import is_permutation_order
from ..pipeline import RunContext, Stage
from ..progress import progress
from .dedup import dense_knn
from .embed import load_valid


def pair_similarity(ids, sims, i: int, j: int) -> float | None:
    """Similarity of i and j if either is in the other's kNN list."""
    for a, b in ((i, j), (j, i)):
        hit = np.flatnonzero(ids[a] == b)
        if len(hit):
            return round(float(sims[a, hit[0]]), 6)
    return None


def removed_rows(ctx: RunContext, store: DocStore, dup_of: np.ndarray, valid: np.ndarray):
    """removed.jsonl: duplicates (with the id they duplicate), bad embeddings, ingest rejects."""
    id_field = ctx.cfg.input.id_field
    ids, sims = dense_knn(ctx)

    def rid(i: int):
        return store.record(i).get(id_field, i)

    for i in np.flatnonzero(dup_of >= 0):
        i, j = int(i), int(dup_of[i])
        yield {"id": rid(i), "reason": "duplicate", "duplicate_of": rid(j), "similarity": pair_similarity(ids, sims, i, j)}
    for i in np.flatnonzero(~valid & (dup_of < 0)):
        yield {"id": rid(int(i)), "reason": "rejected: embedding is zero or NaN"}
    with open(ctx.path("rejects.jsonl"), "rb") as fh:
        for line in fh:
            rej = json.loads(line)
            rej["reason"] = "rejected: " + rej["reason"]
            yield rej


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
        n_removed = write_jsonl(ctx.path("removed.jsonl"), removed_rows(ctx, store, dup_of, valid))
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
        return {"files": files, "removed": n_removed, "counts": counts, **extra}
