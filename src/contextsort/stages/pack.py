"""pack: training contexts of --context-length tokens from the order (on when
--context-length is given), read from the token store (stages/tokenize.py), so a new
order or new pack options never tokenize again."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..config import parse_size
from ..pack import TokenStream, pack_contexts
from ..pipeline import RunContext, Stage
from ..progress import progress
from ..tokenizer import get_tokenizer
from .embed import load_embeddings
from .tokenize import TOKENIZER, packing

class PackStage(Stage):
    name = "pack"
    reads = ("pack", "seed")
    consumes = ("tokens", "pack_tokens", "order", "embeddings")

    def applies(self, cfg) -> bool:
        return packing(cfg)

    def produces(self, cfg):
        return {"packed": ["packed", "packed/pack.json"]}

    def run(self, ctx: RunContext) -> dict:
        pc = ctx.cfg.pack
        seed = ctx.cfg.seed if pc.seed is None else pc.seed
        tok = get_tokenizer(pc.tokenizer)
        order = np.load(ctx.path("order.npy"))
        stream = TokenStream.open(ctx.path("tokens" if pc.tokenizer == TOKENIZER else "tokens_pack"))
        n_ctx = -(-int(stream.seq_len[order].sum()) // int(pc.context_length))
        with progress(n_ctx, "pack", unit="ctx") as bar:
            info = pack_contexts(
                stream, order, ctx.path("packed"), context_length=pc.context_length, mode=pc.mode,
                formats=pc.formats, emb=np.asarray(load_embeddings(ctx)), pad_weight=pc.pad_weight,
                split_cost=pc.split_cost, min_split=pc.min_split, drop_last=pc.drop_last, shuffle=pc.shuffle,
                seed=seed, pad_id=pc.pad_id, shard_bytes=parse_size(pc.shard_size),
                tokenizer_info={"pad_id": tok.pad_id}, progress=bar.update,
                mapper=ctx.engine.map, workers=ctx.engine.workers(),  # ranges of contexts as tasks when > 1
            )
        files = [f"packed/{f}" for fs in info["files"].values() for f in fs]
        return {"contexts": info["counts"]["contexts"], "shards": info["shards"], "write_tasks": info["write_tasks"],
                "extra_files": files,
                "summary": pack_summary(info), "options": {k: v for k, v in asdict(pc).items()}}


def pack_summary(info: dict) -> dict:
    """The numbers of pack.json worth keeping in the manifest."""
    m = info["metrics"]
    keep = ("waste", "documents_split_share", "within_context_adjacent_similarity", "cut_similarity",
            "within_context_pairwise_similarity", "across_contexts")
    return {"context_length": info["context_length"], "mode": info["mode"], **info["counts"],
            **{k: m[k] for k in keep if k in m}}
