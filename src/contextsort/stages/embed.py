"""embed: one unit-norm vector per stored document, written batch by batch into a .npy file
with explicit writes (not a memory map: its pages would count in the resident set) that a
rerun resumes (embed/batched.py). Batches run through the engine's map."""

from __future__ import annotations

import json
import os

import numpy as np

from ..atomic import save_npy
from ..corpus import DocStore
from .. import embed as embedders
from ..embed.batched import encode_to_memmap
from ..pipeline import RunContext, Stage
from ..progress import log, progress

# One embedder and one store per worker process: a Ray worker keeps them across tasks,
# the local engine reuses the one `prepare` loaded.
_EMBEDDERS: dict[str, object] = {}
_STORES: dict[str, DocStore] = {}


def embedder_options(cfg) -> dict:
    # batch_size only when given: wordllama's own batch_size means something else (its inner batch)
    e = cfg.embed
    return {"device": e.device, **({"batch_size": e.batch_size} if e.batch_size else {})}


def cached_embedder(spec: str, options: dict):
    key = spec + "|" + json.dumps(options, sort_keys=True)
    if key not in _EMBEDDERS:
        _EMBEDDERS.clear()  # one model at a time
        _EMBEDDERS[key] = embedders.get_embedder(spec, **options)
    return _EMBEDDERS[key]


def embed_rows(store_dir: str, content: str, spec: str, options: dict, rows: np.ndarray) -> np.ndarray:
    """A task: the vectors of the stored documents at `rows` (runs on any worker).
    `content` (the store's content hash) keys the worker's cached store."""
    key = store_dir + "|" + content
    store = _STORES.get(key)
    if store is None:
        _STORES.clear()
        store = _STORES[key] = DocStore(store_dir)
    return cached_embedder(spec, options).encode([store.text(int(i)) for i in rows])


_TOKENS: dict[str, object] = {}


def embed_token_rows(tokens_dir: str, content: str, spec: str, options: dict, rows: np.ndarray) -> np.ndarray:
    """A task: vectors pooled from the token store's ids of the documents at `rows` (no text read)."""
    from ..pack import TokenStream
    from ..tokens import content_spans

    key = tokens_dir + "|" + content
    if key not in _TOKENS:
        _TOKENS.clear()
        stream = TokenStream.open(tokens_dir)
        _TOKENS[key] = (stream, *content_spans(stream))
    stream, start, length = _TOKENS[key]
    return cached_embedder(spec, options).encode_ids(stream.tokens, start[rows], length[rows])


def load_embeddings(ctx: RunContext) -> np.ndarray:
    """Embeddings as float32 for the later stages. Stored as float32 they are memory-mapped
    afresh for each caller (opening costs nothing), not cached: the pages a stage touched
    leave the process's resident set when the stage lets go of them (1 GB at 1M documents;
    docs/scale.md, memory). Other dtypes are converted once and cached."""
    emb = np.load(ctx.path("embeddings.npy"), mmap_mode="r")
    if emb.dtype == np.float32:
        return emb
    return ctx.cached("embeddings", lambda: np.asarray(emb, dtype=np.float32))


def embedding_rows(ctx: RunContext):
    """The embeddings as a `rowfile.RowFile`: rows read on demand with explicit reads into the
    caller's buffers, so a stage that reads them at random (the hybrid rescoring) keeps the
    file in the page cache instead of its resident set (docs/benchmarks.md, "Memory at 1M")."""
    from ..rowfile import RowFile

    return RowFile(ctx.path("embeddings.npy"))


def load_valid(ctx: RunContext) -> np.ndarray:
    return ctx.cached("embed_valid", lambda: np.load(ctx.path("embed_valid.npy")))


class EmbedStage(Stage):
    name = "embed"
    reads = ("embed",)
    consumes = ("store", "tokens")

    def produces(self, cfg):
        return {"embeddings": ["embeddings.npy", "embed_valid.npy"]}

    def prepare(self, ctx: RunContext) -> None:
        # a model that cannot load fails here, before ingest starts
        _EMBEDDERS.clear()
        cached_embedder(ctx.cfg.embed.embedder, embedder_options(ctx.cfg))

    def run(self, ctx: RunContext) -> dict:
        e = ctx.cfg.embed
        options = embedder_options(ctx.cfg)
        embedder = cached_embedder(e.embedder, options)
        store = DocStore(ctx.path("store"))
        n = len(store)
        bs = int(e.batch_size or getattr(embedder, "batch_size_hint", 0) or 512)
        encode_batches = None
        if hasattr(embedder, "fit"):
            # corpus-fitted embedders (tfidf) see every text first and encode in this process;
            # the fit is seeded, so a resumed run refits the same model
            embedder.fit(store.text(i) for i in range(n))
        else:
            # static embedders that read token ids pool them from the token store (tokenize once)
            from_ids = hasattr(embedder, "encode_ids") and ctx.path("tokens/meta.json").exists()
            task = embed_token_rows if from_ids else embed_rows
            source = str(ctx.path("tokens" if from_ids else "store"))
            content = ctx.record("tokenize" if from_ids else "ingest")["artifacts"]["tokens" if from_ids else "store"]
            if from_ids and not e.batch_size:
                # pooling is cheap: large batches, fewer checkpoints, but enough batches for every worker
                workers = ctx.engine.workers()
                bs = 16384 if workers == 1 else max(64, min(16384, -(-n // (2 * workers))))

            def encode_batches(batches):
                args = ((source, content, e.embedder, options, idx) for idx in batches)
                return (vecs for _, vecs in ctx.engine.map(task, args, ordered=True))

        lengths = np.diff(store.txt_off)  # UTF-8 bytes: a cheap proxy for token count
        with progress(n, "embed") as bar:
            def resumed(k: int) -> None:
                log.info(f"[embed] resuming: {k} of {n} documents already embedded")
                bar.skip_to(k)

            valid, stats = encode_to_memmap(
                embedder, lambda idx: [store.text(int(i)) for i in idx], lengths, ctx.path("embeddings.npy"),
                batch_size=bs, dtype=e.dtype, identity={"config": ctx.cfg.section_values(self.reads)},
                progress=bar.update, on_resume=resumed, encode_batches=encode_batches,
            )
        save_npy(ctx.path("embed_valid.npy"), valid)
        _EMBEDDERS.clear()  # release the model after this stage
        _TOKENS.clear()
        ctx.cache.pop("embeddings", None)
        ctx.cache.pop("embed_valid", None)
        return {
            "embedder": embedder.name, "dim": embedder.dim, "dtype": e.dtype, "batch_size": bs,
            "device": getattr(embedder, "device", "cpu"), "fp16": bool(getattr(embedder, "fp16", False)),
            "docs_per_second": round(stats.docs_per_second, 1), "resumed_batches": stats.resumed_batches,
            "invalid": int((~valid).sum()), "input": "token ids" if encode_batches is not None and from_ids else "text",
        }
