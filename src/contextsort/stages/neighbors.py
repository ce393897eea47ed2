"""neighbors: the kNN graph. The dense cosine kNN (FAISS) always, since dedup needs it; with
--similarity lexical or hybrid also the traversal graph of that signal (similarity.py).
Partitioned runs search one partition (plus --spill neighbouring ones) per task, and each
task also builds the lexical / hybrid graph over the same documents (texts read there)."""

from __future__ import annotations

import time

import numpy as np

from ..atomic import save_npy
from ..distributed.partition import PartitionParams, partitioned_graphs
from ..neighbors import choose_index, knn_graph
from ..pipeline import RunContext, Stage
from ..progress import log, progress
from .embed import embedding_rows, load_embeddings, load_valid
from .partition import load_partitions, uses_partitions


def walk_neighbours(cfg) -> int:
    """Neighbours per document in the traversal graph: --walk-k, or --k when it is none."""
    return int(cfg.knn.walk_k or cfg.knn.k)


def drop_invalid(ids: np.ndarray, sims: np.ndarray, valid: np.ndarray) -> None:
    """Documents with no usable embedding take part in no edge (in place)."""
    bad = ~np.asarray(valid, dtype=bool)
    if bad.any():
        ids[bad] = -1
        hit = np.isin(ids, np.flatnonzero(bad))
        ids[hit] = -1
        sims[ids < 0] = 0


class NeighborsStage(Stage):
    name = "neighbors"
    version = 3  # 3: the traversal graph has --walk-k neighbours, dedup lists --k (always in dedup_*.npy)
    reads = ("knn", "similarity", "seed")
    consumes = ("embeddings", "store", "tokens", "partitions")

    def produces(self, cfg):
        # knn_*: the traversal graph (walk_k per document); dedup_*: the dense kNN at k, for dedup
        return {"knn": ["knn_ids.npy", "knn_sims.npy", "dedup_ids.npy", "dedup_sims.npy"]}

    def key(self, ctx: RunContext) -> object:
        return {"spill": ctx.cfg.engine.spill} if uses_partitions(ctx.cfg) else None

    def run(self, ctx: RunContext) -> dict:
        cfg = ctx.cfg
        emb, valid = load_embeddings(ctx), load_valid(ctx)
        n = emb.shape[0]
        t0 = time.perf_counter()
        parts = load_partitions(ctx)
        sim = cfg.similarity
        k, walk_k = cfg.knn.k, walk_neighbours(cfg)
        if parts is not None:
            params = PartitionParams(k=k, walk_k=walk_k, index=cfg.knn.index, nprobe=cfg.knn.nprobe, seed=cfg.seed,
                                     spill=cfg.engine.spill, similarity=sim.similarity, lexical=sim.lexical,
                                     hybrid_weight=sim.hybrid_weight, lexical_method=sim.lexical_method,
                                     tokens_dir=str(ctx.path("tokens")))
            with progress(parts.count, "neighbors", unit="partition") as bar:
                def mapper(fn, args):
                    for item in ctx.engine.map(fn, args):
                        bar.update(1)
                        yield item
                ids, sims, t_ids, t_sims, info = partitioned_graphs(emb, valid, parts, params, mapper)
            signal_params = info.pop("signal_params", None)
            info = {"index": f"partitioned:{cfg.knn.index}", "k": int(ids.shape[1]), "walk_k": walk_k, **info}
        else:
            with progress(n, "neighbors") as bar:
                # ivffs reads the rows with explicit reads (never maps them: its random re-rank
                # would make the whole file resident, docs/benchmarks.md "Memory at 1M")
                rows = embedding_rows(ctx) if choose_index(n, cfg.knn.index) == "ivffs" else np.asarray(emb)
                ids, sims, kinfo = knn_graph(rows, k=max(k, walk_k), index=cfg.knn.index, seed=1234 + cfg.seed,
                                             nprobe=cfg.knn.nprobe, progress=bar.update)
                del rows
            info = {"index": kinfo.index, "k": k, "walk_k": walk_k, "params": kinfo.params}
            walk_ids, walk_sims = np.ascontiguousarray(ids[:, :walk_k]), np.ascontiguousarray(sims[:, :walk_k])
            t_ids, t_sims = (walk_ids, walk_sims) if sim.similarity == "dense" else (None, None)
            ids, sims = np.ascontiguousarray(ids[:, :k]), np.ascontiguousarray(sims[:, :k])
        drop_invalid(ids, sims, valid)
        dense_seconds = time.perf_counter() - t0
        save_npy(ctx.path("dedup_ids.npy"), ids)
        save_npy(ctx.path("dedup_sims.npy"), sims)
        if sim.similarity != "dense":
            ids = sims = None  # saved; the signal graph below needs the memory (docs/scale.md)
        if sim.similarity == "dense":
            if t_ids is None:  # partitioned, walk_k == k: the traversal graph is the dedup lists
                t_ids, t_sims = ids, sims
            drop_invalid(t_ids, t_sims, valid)
            save_npy(ctx.path("knn_ids.npy"), t_ids)
            save_npy(ctx.path("knn_sims.npy"), t_sims)
            return {**info, "similarity": "dense"}
        t = time.perf_counter()
        if parts is not None:
            # built inside the partition tasks, over each partition's own + spill documents
            used = {p["similarity"] for p in signal_params}
            if used != {sim.similarity}:
                raise RuntimeError(f"partition tasks built {sorted(used)} graphs, {sim.similarity} was asked for")
            sparams, timing = {"per_partition": signal_params}, {}  # the two signals' times are not separable here
        else:
            drop_invalid(walk_ids, walk_sims, valid)
            # the memory map is let go: its pages the dense kNN touched leave the resident set,
            # the signal graph reads the rows it needs from the file (1 GB at 1M; docs/benchmarks.md)
            del emb
            t_ids, t_sims, sinfo = self.signal_graph(ctx, embedding_rows(ctx), walk_ids, walk_sims)
            sparams = sinfo.params
            timing = {"dense_seconds": round(dense_seconds, 3), "similarity_seconds": round(time.perf_counter() - t, 3)}
        drop_invalid(t_ids, t_sims, valid)
        save_npy(ctx.path("knn_ids.npy"), t_ids)
        save_npy(ctx.path("knn_sims.npy"), t_sims)
        return {**info, "similarity": sim.similarity, "similarity_params": sparams, **timing}

    @staticmethod
    def signal_graph(ctx: RunContext, emb, ids, sims):
        """Lexical / hybrid traversal graph over every document; lexical terms are the words
        the token store's ids spell (no second tokenization of the texts). `emb`: the
        embeddings' `rowfile.RowFile` (or an array)."""
        from ..pack import TokenStream
        from ..similarity import lexical_vectors_from_ids, similarity_graph
        from ..tokenizer import get_tokenizer
        from ..tokens import content_spans
        from .tokenize import TOKENIZER

        sim = ctx.cfg.similarity
        n = emb.shape[0]
        log.info(f"[neighbors] {sim.similarity} similarity over {n} documents")
        with progress(3, "lexical", unit="step") as bar:
            # a mapping of the token store of its own, unmapped once the vectors are built
            # (the run's cached one would keep every page it read resident: 200 MB at 1M)
            stream = TokenStream.open(ctx.path("tokens"))
            start, length = content_spans(stream)
            lex = lexical_vectors_from_ids(stream.tokens, start, length, get_tokenizer(TOKENIZER), sim.lexical)
            del stream, start, length
            bar.update(1)
            out = similarity_graph(sim.similarity, emb, None, walk_neighbours(ctx.cfg), weighting=sim.lexical,
                                   weight=sim.hybrid_weight, lexical_method=sim.lexical_method, dense_knn=(ids, sims),
                                   lexical=lex, overwrite_dense=True)  # the walk lists are not used after this
            bar.update(2)
        return out
