"""tokenize: every stored document encoded once into a memory-mapped token store.

The static embedder pools its vectors from these ids, the lexical signal counts the words
they spell, and packing reads them as they are: no stage tokenizes a text again. The store
uses the embedder's tokenizer (llama2); packing with another tokenizer adds a second,
explicit stage (`tokenize_pack`) that tokenizes only what packing needs.
"""

from __future__ import annotations

import numpy as np

from ..config import fingerprint
from ..corpus import DocStore
from ..embed.wordllama import TOKENIZER
from ..pack import tokenize_store
from ..pipeline import RunContext, Stage
from ..progress import progress
from ..tokenizer import get_tokenizer

TOKEN_FILES = ["tokens", "tokens/meta.json", "tokens/stream.bin", "tokens/doc_off.npy"]
PACK_TOKEN_FILES = ["tokens_pack", "tokens_pack/meta.json", "tokens_pack/stream.bin", "tokens_pack/doc_off.npy"]


def packing(cfg) -> bool:
    return bool(cfg.pack.context_length)


def embedder_reads_ids(cfg) -> bool:
    return cfg.embed.embedder.split(":")[0] == "wordllama"


def needs_token_store(cfg) -> bool:
    """The llama2 token store feeds the static embedder, the lexical signal and llama2 packing."""
    return embedder_reads_ids(cfg) or cfg.similarity.similarity != "dense" or (packing(cfg) and cfg.pack.tokenizer == TOKENIZER)


def store_bos(cfg) -> bool:
    return bool(packing(cfg) and cfg.pack.tokenizer == TOKENIZER and cfg.pack.bos)


def engine_tasks(ctx: RunContext, tokenizer_spec: str) -> dict:
    """tokenize_store's arguments for ranges of documents as engine tasks (when the engine has
    more than one worker; tasks build their tokenizer from the spec). `tasks` in the manifest: 0 for one pass."""
    return {"mapper": ctx.engine.map, "workers": ctx.engine.workers(), "tokenizer_spec": tokenizer_spec}


class TokenizeStage(Stage):
    name = "tokenize"
    consumes = ("store",)

    def applies(self, cfg) -> bool:
        return needs_token_store(cfg)

    def produces(self, cfg):
        return {"tokens": TOKEN_FILES}

    def key(self, ctx: RunContext) -> object:
        return {"tokenizer": TOKENIZER, "bos": store_bos(ctx.cfg)}

    def run(self, ctx: RunContext) -> dict:
        tok = get_tokenizer(TOKENIZER)
        store = DocStore(ctx.path("store"))
        with progress(len(store), "tokenize") as bar:
            meta = tokenize_store(store, tok, ctx.path("tokens"), bos=store_bos(ctx.cfg), progress=bar.update,
                                  **engine_tasks(ctx, TOKENIZER))
        info = {k: meta[k] for k in ("tokenizer", "vocab_size", "dtype", "tokens", "tokens_per_second", "tasks")}
        # the ids without separators: what the embedder and the lexical signal read (a BOS
        # added for packing does not change them, so it does not recompute the embeddings)
        info["artifact_fingerprints"] = {"tokens": fingerprint(tok.fingerprint, ctx.record("ingest")["content_hash"])}
        return info


class PackTokenizeStage(Stage):
    name = "tokenize_pack"
    consumes = ("store", "dup_of", "embeddings")

    def applies(self, cfg) -> bool:
        return packing(cfg) and cfg.pack.tokenizer != TOKENIZER

    def produces(self, cfg):
        return {"pack_tokens": PACK_TOKEN_FILES}

    def key(self, ctx: RunContext) -> object:
        return {"tokenizer": ctx.cfg.pack.tokenizer, "bos": ctx.cfg.pack.bos}

    def prepare(self, ctx: RunContext) -> None:
        ctx.cache["pack_tokenizer"] = get_tokenizer(ctx.cfg.pack.tokenizer)  # fails before any work if missing

    def run(self, ctx: RunContext) -> dict:
        pc = ctx.cfg.pack
        tok = ctx.cache.get("pack_tokenizer") or get_tokenizer(pc.tokenizer)
        store = DocStore(ctx.path("store"))
        # only the documents packing will read: the kept ones (duplicates and rejects are skipped)
        keep = (np.load(ctx.path("dup_of.npy")) < 0) & np.load(ctx.path("embed_valid.npy"))
        with progress(len(store), "tokenize_pack") as bar:
            meta = tokenize_store(store, tok, ctx.path("tokens_pack"), bos=pc.bos, progress=bar.update, keep=keep,
                                  **engine_tasks(ctx, pc.tokenizer))
        info = {k: meta[k] for k in ("tokenizer", "vocab_size", "dtype", "tokens", "tokens_per_second", "tasks")}
        return {**info, "documents_tokenized": int(keep.sum()), "documents_skipped": int((~keep).sum())}
