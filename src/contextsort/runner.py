"""Stage orchestration: the only code that reads and writes the run directory.

Stages: ingest -> embed -> neighbors -> dedup -> order -> write, and, when a context
length is set, tokenize (after ingest) -> pack (after order). Each stage's
artifact is written to a temporary name and renamed; the manifest records each
stage's config fingerprint, so a rerun skips every stage whose inputs and config
are unchanged (resume after a crash, or change only a late stage's options).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from . import __version__
from .config import Config, fingerprint
from .corpus import CorpusReader, DocStore, DocStoreWriter, Reject, _save_npy, fingerprint_inputs
from .dedup import find_duplicates
from .graph import graph_from_knn, restrict_knn
from .metrics import adjacent_similarity, label_agreement, path_bound, path_weight
from .neighbors import knn_graph
from .order import compute_order, is_permutation_order, order_inputs

# Bumped when the store layout or the ingest manifest entry changes, so that run
# directories written by an older version are re-ingested instead of misread.
STORE_LAYOUT = 3

PARTITIONED_ARTIFACTS = ("partition_dup_of.npy", "partition_order.npy", "partition_assign.npy")


class RunError(Exception):
    """A run cannot proceed (bad run directory, nothing to order, counts that do not add up)."""


def _progress(total: int | None, desc: str, quiet: bool, unit: str = "doc"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, dynamic_ncols=True, leave=False, file=sys.stderr)


def _versions() -> dict:
    import faiss
    import numba

    out = {"contextsort": __version__, "python": platform.python_version(), "numpy": np.__version__}
    out["faiss"] = faiss.__version__
    out["numba"] = numba.__version__
    try:
        import pyarrow

        out["pyarrow"] = pyarrow.__version__
    except ImportError:
        pass
    return out


def _write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class RunResult:
    run_dir: Path
    manifest: dict
    order: np.ndarray  # store positions of the kept documents, in output order
    skipped: list[str] = field(default_factory=list)  # stages reused from an earlier run

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})

    @property
    def counts(self) -> dict:
        return self.manifest.get("counts", {})


class Runner:
    """Runs the pipeline over `inputs` into `run_dir` with `config`."""

    def __init__(
        self,
        inputs: Iterable[str | os.PathLike],
        run_dir: str | os.PathLike,
        config: Config | None = None,
        quiet: bool = False,
        overwrite: bool = False,
        log: Callable[[str], None] | None = None,
    ):
        self.inputs = [Path(p) for p in inputs]
        self.dir = Path(run_dir)
        self.cfg = config or Config()
        self.quiet = quiet
        self.log = log or (lambda msg: None if quiet else print(msg, file=sys.stderr))
        self._prepare_dir(overwrite)
        self.manifest_path = self.dir / "manifest.json"
        self.manifest = json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {}
        self.manifest.setdefault("stages", {})
        if not self.manifest_path.exists():
            # mark the directory as ours before any stage writes into it, so that a
            # run killed during its first stage can be resumed without --overwrite
            self._save_manifest()
        self.skipped: list[str] = []
        self._ray = None  # RaySession, started on first use when config.engine.name == "ray"

    # -- run directory -----------------------------------------------------
    def _prepare_dir(self, overwrite: bool) -> None:
        d = self.dir
        if d.exists() and not d.is_dir():
            raise RunError(f"{d}: exists and is not a directory")
        if d.exists() and any(d.iterdir()) and not (d / "manifest.json").exists():
            if not overwrite:
                raise RunError(f"{d}: directory is not empty and is not a contextsort run (use --overwrite to replace it)")
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)

    def _save_manifest(self) -> None:
        _write_json(self.manifest_path, self.manifest)

    def _fresh(self, stage: str, fp: str, artifacts: list[str]) -> bool:
        st = self.manifest["stages"].get(stage)
        return bool(st and st.get("fingerprint") == fp and all((self.dir / a).exists() for a in artifacts))

    def _done(self, stage: str, fp: str, seconds: float, **extra) -> None:
        # Later stages need no explicit invalidation: each fingerprint includes its
        # upstream's, so a changed stage changes every fingerprint after it.
        self.manifest["stages"][stage] = {"fingerprint": fp, "seconds": round(seconds, 3), **extra}
        self._save_manifest()

    # -- stages ------------------------------------------------------------
    def run(self) -> RunResult:
        try:
            return self._run()
        finally:
            if self._ray is not None:
                self._ray.close()
                self._ray = None

    def _run(self) -> RunResult:
        cfg = self.cfg
        t_all = time.perf_counter()
        self.manifest.update(
            {
                "contextsort": __version__,
                "inputs": [str(p) for p in self.inputs],
                "config": cfg.to_dict(),
                "versions": _versions(),
            }
        )
        if not self.inputs:
            raise RunError("no input given")
        input_fp = fingerprint_inputs(self.inputs)
        self.manifest["input_fingerprint"] = input_fp

        fp_ingest = fingerprint("ingest", STORE_LAYOUT, input_fp, cfg.input)
        self._preflight_embedder()  # a model that cannot load fails before any work
        self._stage("ingest", fp_ingest, ["store/records.jsonl", "store/text.idx.npy", "rejects.jsonl"], self._ingest)
        store = DocStore(self.dir / "store")
        n_read = self.manifest["stages"]["ingest"]["records_read"]
        n_ingest_rejects = self.manifest["stages"]["ingest"]["rejected"]
        if len(store) == 0:
            with open(self.dir / "rejects.jsonl", encoding="utf-8") as fh:
                first = [json.loads(line) for _, line in zip(range(3), fh)]
            why = "; ".join(f"{r['source']}" + (f":{r['line']}" if r["line"] else "") + f": {r['reason']}" for r in first)
            raise RunError(
                f"no usable documents in the input ({n_read} records read, {n_ingest_rejects} rejected"
                + (f": {why}" if why else "") + ")"
            )

        # downstream stages depend on the stored content, not on how it was read:
        # touching an input file re-reads it, but reuses the embeddings if nothing changed
        content = self.manifest["stages"]["ingest"]["content_hash"]
        fp_embed = self._embed_fingerprint(content)
        self._stage("embed", fp_embed, ["embeddings.npy"], lambda: self._embed(store, fp_embed))
        emb = self._load_embeddings()
        valid = np.load(self.dir / "embed_valid.npy")

        fp_knn = fingerprint("neighbors", fp_embed, cfg.knn, cfg.seed, cfg.similarity, *self._engine_fp())
        # engine ray: partitions are built on the dense cosine only (see distributed/)
        dense_only = cfg.similarity.similarity == "dense" or self._partitioned
        knn_files = ["knn_ids.npy", "knn_sims.npy"] + ([] if dense_only else ["dedup_ids.npy", "dedup_sims.npy"])
        knn_files += list(PARTITIONED_ARTIFACTS) if self._partitioned else []
        self._stage("neighbors", fp_knn, knn_files, lambda: self._neighbors(emb, valid, store))
        ids = np.load(self.dir / "knn_ids.npy", mmap_mode="r")
        sims = np.load(self.dir / "knn_sims.npy", mmap_mode="r")
        # dedup keeps the dense cosine kNN whatever signal builds the traversal graph
        dd_ids = ids if dense_only else np.load(self.dir / "dedup_ids.npy")
        dd_sims = sims if dense_only else np.load(self.dir / "dedup_sims.npy")

        fp_dedup = fingerprint("dedup", fp_knn, cfg.dedup)
        self._stage("dedup", fp_dedup, ["dup_of.npy"], lambda: self._dedup(store, dd_ids, dd_sims, valid))
        dup_of = np.load(self.dir / "dup_of.npy")

        fp_order = fingerprint("order", fp_dedup, cfg.order, cfg.seed)
        self._stage("order", fp_order, ["order.npy"], lambda: self._order(emb, ids, sims, dup_of, valid, store))
        order = np.load(self.dir / "order.npy")

        fp_write = fingerprint("write", fp_order, cfg.output)
        outs = [f"ordered.{f}" for f in cfg.output.formats] + ["removed.jsonl"]
        self._stage("write", fp_write, outs, lambda: self._write(store, order, dup_of, valid, dd_sims, dd_ids))

        if cfg.pack.context_length:
            self._pack_stages(store, content, fp_order, order, emb)

        self._account(n_read, store, dup_of, valid, order)
        self.manifest["seconds_total"] = round(time.perf_counter() - t_all, 3)
        self._save_manifest()
        return RunResult(self.dir, self.manifest, order, list(self.skipped))

    def _pack_stages(self, store: DocStore, content: str, fp_order: str, order: np.ndarray, emb) -> None:
        """tokenize (every stored document, so a new order needs no new tokens) -> pack.
        `content`: the ingest stage's content hash (tokens depend on the stored texts only)."""
        from dataclasses import asdict

        from .pack import TokenStream, pack_contexts, parse_size, tokenize_store
        from .tokenizer import get_tokenizer

        pc = self.cfg.pack
        tok = get_tokenizer(pc.tokenizer)
        fp_tok = fingerprint("tokenize", content, pc.tokenizer, tok.fingerprint, pc.bos)

        def tokenize():
            with _progress(len(store), "tokenize", self.quiet) as bar:
                meta = tokenize_store(store, tok, self.dir / "tokens", bos=pc.bos, progress=bar.update)
            return {k: meta[k] for k in ("tokenizer", "vocab_size", "dtype", "tokens", "tokens_per_second")}

        self._stage("tokenize", fp_tok, ["tokens/meta.json", "tokens/stream.bin", "tokens/doc_off.npy"], tokenize)

        opts = {k: v for k, v in asdict(pc).items() if k != "tokenizer"}
        seed = self.cfg.seed if pc.seed is None else pc.seed
        fp_pack = fingerprint("pack", fp_tok, fp_order, opts, seed)

        def pack():
            stream = TokenStream.open(self.dir / "tokens")
            n_ctx = -(-int(stream.seq_len[order].sum()) // int(pc.context_length))
            with _progress(n_ctx, "pack", self.quiet, unit="ctx") as bar:
                info = pack_contexts(
                    stream, order, self.dir / "packed", context_length=pc.context_length, mode=pc.mode,
                    formats=pc.formats, emb=np.asarray(emb), pad_weight=pc.pad_weight, split_cost=pc.split_cost,
                    min_split=pc.min_split, drop_last=pc.drop_last, shuffle=pc.shuffle, seed=seed,
                    pad_id=pc.pad_id, shard_bytes=parse_size(pc.shard_size),
                    tokenizer_info={"pad_id": tok.pad_id}, progress=bar.update,
                )
            files = [f"packed/{f}" for fs in info["files"].values() for f in fs]
            return {"contexts": info["counts"]["contexts"], "shards": info["shards"], "files": files,
                    "summary": _pack_summary(info)}

        prev_files = (self.manifest["stages"].get("pack") or {}).get("files", [])
        self._stage("pack", fp_pack, ["packed/pack.json", *prev_files], pack)
        self.manifest.setdefault("metrics", {})["pack"] = self.manifest["stages"]["pack"]["summary"]
        self._save_manifest()

    def pack_only(self) -> RunResult:
        """`contextsort pack RUN_DIR`: (re)pack the order of a finished run with this config's pack options."""
        st = self.manifest.get("stages", {})
        for need in ("ingest", "order"):
            if need not in st:
                raise RunError(f"{self.dir}: no finished '{need}' stage: run `contextsort run` first")
        if not (self.dir / "order.npy").exists():
            raise RunError(f"{self.dir}: order.npy is missing: rerun `contextsort run`")
        if not self.cfg.pack.context_length:
            raise RunError("no context length given")
        t = time.perf_counter()
        self.manifest["config"] = self.cfg.to_dict()
        store = DocStore(self.dir / "store")
        order = np.load(self.dir / "order.npy")
        emb = np.load(self.dir / "embeddings.npy", mmap_mode="r")
        content = st["ingest"].get("content_hash") or st["ingest"]["fingerprint"]
        self._pack_stages(store, content, st["order"]["fingerprint"], order, emb)
        self.manifest["seconds_pack"] = round(time.perf_counter() - t, 3)
        self._save_manifest()
        return RunResult(self.dir, self.manifest, order, list(self.skipped))

    def _stage(self, name: str, fp: str, artifacts: list[str], fn: Callable[[], dict | None]):
        if self._fresh(name, fp, artifacts):
            self.skipped.append(name)
            self.log(f"[{name}] up to date, skipped")
            return
        t = time.perf_counter()
        extra = fn() or {}
        secs = time.perf_counter() - t
        _maybe_crash(f"{name}:before-commit")
        self._done(name, fp, secs, **extra)
        self.log(f"[{name}] done in {secs:.2f}s")

    def _ingest(self) -> dict:
        cfg = self.cfg.input
        reader = CorpusReader(self.inputs, cfg.text_field, cfg.id_field, cfg.label_field, cfg.strict)
        writer = DocStoreWriter(self.dir / "store", cfg.label_field, cfg.id_field)
        rejects: list[Reject] = []
        n = 0
        with _progress(None, "read", self.quiet) as bar:
            for item in reader:
                n += 1
                if isinstance(item, Reject):
                    rejects.append(item)
                else:
                    writer.add(item)
                bar.update(1)
                if n == 20:
                    _maybe_crash("ingest:mid")
        rejects.extend(writer.close(strict=cfg.strict))  # records whose id was already used
        _write_jsonl(self.dir / "rejects.jsonl", (r.to_json() for r in rejects))
        _maybe_crash("ingest:before-commit")
        per_input = [c.to_json() for c in reader.counts]
        for c in per_input:  # a wrong path or field name in one of several inputs must not pass unnoticed
            if c["documents"] == 0:
                print(f"warning: input {c['input']} yielded no document ({c['records']} records read, {c['rejected']} rejected)", file=sys.stderr)
        return {"records_read": n, "documents": writer.n, "rejected": len(rejects), "content_hash": writer.content_hash,
                "inputs": per_input}

    def _embed_fingerprint(self, content: str) -> str:
        e = self.cfg.embed
        # the default float32 keeps the fingerprint of runs made before the dtype option
        return fingerprint("embed", content, e.embedder, *([e.dtype] if e.dtype != "float32" else []))

    def _preflight_embedder(self) -> None:
        """Build the embedder before ingest (EmbedderUnavailable if it cannot load), unless the
        embeddings of the content stored by an earlier run will be reused."""
        from .embed import get_embedder

        self._embedder = None
        prev = self.manifest["stages"].get("ingest", {}).get("content_hash")
        if prev is None or not self._fresh("embed", self._embed_fingerprint(prev), ["embeddings.npy"]):
            self._embedder = get_embedder(self.cfg.embed.embedder, **self._embed_options())

    def _embed_options(self) -> dict:
        # batch_size only when given: wordllama's own batch_size means something else (its inner batch)
        e = self.cfg.embed
        return {"device": e.device, **({"batch_size": e.batch_size} if e.batch_size else {})}

    def _load_embeddings(self) -> np.ndarray:
        """Embeddings as float32 for the later stages (memory-mapped when stored as float32)."""
        emb = np.load(self.dir / "embeddings.npy", mmap_mode="r")
        return emb if emb.dtype == np.float32 else np.asarray(emb, dtype=np.float32)

    def _embed(self, store: DocStore, fp_embed: str = "") -> dict:
        """Length-batched encoding straight into a memory map; resumes after a crash (embed/batched.py)."""
        from tqdm.auto import tqdm

        from .embed import get_embedder
        from .embed.batched import encode_to_memmap

        e = self.cfg.embed
        embedder = getattr(self, "_embedder", None) or get_embedder(e.embedder, **self._embed_options())
        self._embedder = None  # release the model after this stage
        bs = int(e.batch_size or getattr(embedder, "batch_size_hint", 0) or 512)
        n = len(store)
        if self._partitioned and not hasattr(embedder, "fit") and e.dtype == "float32":
            return self._embed_ray(store, embedder, bs)
        if hasattr(embedder, "fit"):
            # corpus-fitted embedders (tfidf) see every text first; the fit is seeded, so a
            # resumed run refits the same model and its remaining batches match
            embedder.fit(store.text(i) for i in range(n))
        lengths = np.diff(store.txt_off)  # UTF-8 bytes: a cheap proxy for token count
        bar = tqdm(total=n, desc="embed", unit="doc", disable=self.quiet, dynamic_ncols=True, leave=False, file=sys.stderr)

        def resumed(k: int) -> None:
            self.log(f"[embed] resuming: {k} of {n} documents already embedded")
            bar.reset(total=n)
            bar.n = bar.last_print_n = k  # docs/s counts only this run's work
            bar.refresh()

        finished = [0]  # a disabled tqdm does not count

        def step(k: int) -> None:
            bar.update(k)
            finished[0] += k
            if finished[0] >= n // 2:
                _maybe_crash("embed:mid")

        with bar:
            valid, stats = encode_to_memmap(
                embedder, lambda idx: [store.text(int(i)) for i in idx], lengths, self.dir / "embeddings.npy",
                batch_size=bs, dtype=e.dtype, identity={"fingerprint": fp_embed}, progress=step, on_resume=resumed,
            )
        _save_npy(self.dir / "embed_valid.npy", valid)
        return {
            "embedder": embedder.name, "dim": embedder.dim, "dtype": e.dtype, "batch_size": bs,
            "device": getattr(embedder, "device", "cpu"), "fp16": bool(getattr(embedder, "fp16", False)),
            "docs_per_second": round(stats.docs_per_second, 1), "resumed_batches": stats.resumed_batches,
            "invalid": int((~valid).sum()),
        }

    def _embed_ray(self, store: DocStore, embedder, bs: int) -> dict:
        """Ray Data embedding (one model per actor) straight into a memory-mapped .npy."""
        n = len(store)
        tmp = self.dir / "embeddings.npy.tmp"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, embedder.dim))
        with _progress(n, "embed", self.quiet) as bar:
            self._ray_session().embed(
                self.dir / "store", n, self.cfg.embed.embedder, embedder.dim, out, bs, self.cfg.engine.workers, bar.update,
                options=self._embed_options(),
            )
        valid = np.empty(n, dtype=bool)
        for start in range(0, n, 262_144):
            chunk = out[start : start + 262_144]
            norms = np.linalg.norm(chunk, axis=1)
            valid[start : start + len(chunk)] = np.isfinite(norms) & (norms > 0.5)
        out[~valid] = 0.0
        out.flush()
        del out
        _save_npy(self.dir / "embed_valid.npy", valid)
        os.replace(tmp, self.dir / "embeddings.npy")
        return {"embedder": embedder.name, "dim": embedder.dim, "dtype": "float32", "batch_size": bs, "engine": "ray",
                "invalid": int((~valid).sum())}

    # -- engine "ray": partitioned kNN + dedup + traversal (see distributed/) --
    @property
    def _partitioned(self) -> bool:
        name = getattr(getattr(self.cfg, "engine", None), "name", "local")
        if name not in ("local", "ray"):
            raise RunError(f"unknown engine '{name}' (local, ray)")
        return name == "ray"

    def _engine_fp(self) -> tuple:
        """Fingerprint parts of the partitioned engine: none for local runs (their fingerprints stay as they were)."""
        if not self._partitioned:
            return ()
        e = self.cfg.engine
        return ("ray", e.partitions, e.spill, self.cfg.dedup, self.cfg.order)

    def _ray_session(self):
        from .distributed import RaySession, RayUnavailable

        if self._ray is None:
            try:
                self._ray = RaySession(self.cfg.engine.ray_address, self.cfg.engine.workers, quiet=self.quiet).start()
            except RayUnavailable as e:
                raise RunError(str(e)) from None
        return self._ray

    def _neighbors_partitioned(self, emb: np.ndarray, valid: np.ndarray, store: DocStore) -> dict:
        from .distributed import run_partitioned

        if not is_permutation_order(self.cfg.order.algorithm):
            raise RunError(f"--engine ray needs an order that visits every document once, not '{self.cfg.order.algorithm}'")
        sim = getattr(getattr(self.cfg, "similarity", None), "similarity", "dense")
        if sim != "dense":
            self.log(f"[neighbors] engine ray: partitions use the dense cosine; --similarity {sim} applies to the local engine only")

        n = emb.shape[0]
        k = max(0, min(self.cfg.knn.k, n - 1))
        tmp_i, tmp_s = self.dir / "knn_ids.npy.tmp", self.dir / "knn_sims.npy.tmp"
        ids = np.lib.format.open_memmap(tmp_i, mode="w+", dtype=np.int64, shape=(n, k))
        sims = np.lib.format.open_memmap(tmp_s, mode="w+", dtype=np.float32, shape=(n, k))
        res = run_partitioned(emb, valid, store.text_hash, self.cfg, self._ray_session(), ids, sims, self.log)
        ids.flush()
        sims.flush()
        del ids, sims
        _save_npy(self.dir / "partition_dup_of.npy", res.dup_of)
        _save_npy(self.dir / "partition_order.npy", res.order)
        _save_npy(self.dir / "partition_assign.npy", res.assign)
        os.replace(tmp_i, self.dir / "knn_ids.npy")
        os.replace(tmp_s, self.dir / "knn_sims.npy")
        return {"index": f"partitioned:{self.cfg.knn.index}", "k": k, "engine": "ray", **res.info}

    def _neighbors(self, emb: np.ndarray, valid: np.ndarray, store: DocStore | None = None) -> dict:
        if self._partitioned:
            return self._neighbors_partitioned(emb, valid, store)
        n = emb.shape[0]
        t0 = time.perf_counter()
        with _progress(n, "neighbors", self.quiet) as bar:
            ids, sims, info = knn_graph(
                np.asarray(emb), k=self.cfg.knn.k, index=self.cfg.knn.index, seed=1234 + self.cfg.seed,
                nprobe=self.cfg.knn.nprobe, progress=bar.update,
            )
        # documents with no usable embedding take part in no edge
        bad = ~valid
        if bad.any():
            ids[bad] = -1
            sims[bad] = 0
            hit = np.isin(ids, np.flatnonzero(bad))
            ids[hit] = -1
            sims[hit] = 0
        sim = self.cfg.similarity
        if sim.similarity == "dense":
            _save_npy(self.dir / "knn_ids.npy", ids)
            _save_npy(self.dir / "knn_sims.npy", sims)
            return {"index": info.index, "k": info.k, "params": info.params, "similarity": "dense"}
        return self._similarity_graph(emb, valid, store, ids, sims, info, time.perf_counter() - t0)

    def _similarity_graph(self, emb, valid, store: DocStore, ids, sims, info, dense_seconds: float) -> dict:
        """Lexical / hybrid traversal graph; the dense kNN is kept (dedup_*.npy) for dedup."""
        from .similarity import similarity_graph

        sim = self.cfg.similarity
        n, bs = len(store), 4096
        t = time.perf_counter()
        texts = (x for s in range(0, n, bs) for x in store.texts(s, min(n, s + bs)))
        t_ids, t_sims, sinfo = similarity_graph(
            sim.similarity, np.asarray(emb), texts, self.cfg.knn.k, weighting=sim.lexical,
            weight=sim.hybrid_weight, lexical_method=sim.lexical_method, dense_knn=(ids, sims),
        )
        bad = ~valid
        if bad.any():  # the same rule as dense: rejected documents take part in no edge
            t_ids[bad] = -1
            hit = np.isin(t_ids, np.flatnonzero(bad))
            t_ids[hit] = -1
            t_sims[t_ids < 0] = 0
        _save_npy(self.dir / "dedup_ids.npy", ids)
        _save_npy(self.dir / "dedup_sims.npy", sims)
        _save_npy(self.dir / "knn_ids.npy", t_ids)
        _save_npy(self.dir / "knn_sims.npy", t_sims)
        return {"index": info.index, "k": info.k, "params": info.params, "similarity": sinfo.similarity,
                "similarity_params": sinfo.params, "dense_seconds": round(dense_seconds, 3),
                "similarity_seconds": round(time.perf_counter() - t, 3)}

    def _dedup(self, store: DocStore, ids, sims, valid) -> dict:
        cfg = self.cfg.dedup
        if self._partitioned:  # computed inside the partition tasks
            dup_of = np.load(self.dir / "partition_dup_of.npy")
        else:
            dup_of = find_duplicates(ids, sims, cfg.threshold, store.text_hash if cfg.exact else None, valid)
        _save_npy(self.dir / "dup_of.npy", dup_of)
        return {"duplicates": int((dup_of >= 0).sum()), "threshold": cfg.threshold}

    def _order(self, emb, ids, sims, dup_of, valid, store: DocStore) -> dict:
        # documents without a usable embedding were rejected: they take no part
        keep_mask = (dup_of < 0) & valid
        kept = np.flatnonzero(keep_mask)
        k_ids, k_sims = restrict_knn(ids, sims, dup_of, keep_mask)
        graph = graph_from_knn(k_ids, k_sims)
        oc = self.cfg.order
        if self._partitioned:  # walked inside the partition tasks; metrics below use the merged graph
            order = np.load(self.dir / "partition_order.npy")
            pos = np.full(len(keep_mask), -1, dtype=np.int64)
            pos[kept] = np.arange(len(kept))
            local = pos[order]
        else:
            emb_kept = np.asarray(emb[kept]) if "emb" in order_inputs(oc.algorithm) else None
            local = compute_order(oc.algorithm, graph, seed=self.cfg.seed, knn_ids=k_ids, emb=emb_kept,
                                  clusters=oc.clusters, neighbors=oc.knn_neighbors)
        order = kept[local]
        _save_npy(self.dir / "order.npy", order)
        emb_k = np.asarray(emb)
        metrics = {
            "adjacent_similarity": {
                "ordered": adjacent_similarity(emb_k, order),
                "random": adjacent_similarity(emb_k, np.random.default_rng(self.cfg.seed).permutation(order)),
            },
        }
        pw = path_weight(graph, local)
        bound = path_bound(graph)
        metrics["path_weight"] = {**pw, "bound": bound, "ratio": pw["sum"] / bound if bound else 0.0}
        if store.label_codes is not None:
            metrics["label_agreement"] = label_agreement(store.label_codes, order, seed=self.cfg.seed)
        if not is_permutation_order(oc.algorithm):
            # e.g. the kNN baseline: documents repeat; say how often each one appears
            appear = np.bincount(local, minlength=graph.n)
            per_doc = np.zeros(len(dup_of), dtype=np.int64)
            per_doc[kept] = appear
            _save_npy(self.dir / "order_counts.npy", per_doc)
            metrics["repeats"] = {"rows": int(len(order)), "documents": int(graph.n), "min": int(appear.min()) if graph.n else 0,
                                  "max": int(appear.max()) if graph.n else 0, "mean": float(appear.mean()) if graph.n else 0.0,
                                  "counts_file": "order_counts.npy"}
        self.manifest["metrics"] = metrics
        return {"algorithm": self.cfg.order.algorithm, "graph_edges": graph.n_edges}

    def _write(self, store: DocStore, order, dup_of, valid, sims, ids) -> dict:
        from .formats import write_ordered

        extra = {}
        if self._partitioned:
            files, extra = self._write_parallel(store, order)
        else:
            files, extra = write_ordered(self.dir, store, order, self.cfg.output.formats, self.cfg.input.label_field, quiet=self.quiet)
        _maybe_crash("write:mid")
        # removed.jsonl: duplicates (with the id they duplicate) + rejects from ingest and embed
        removed = []
        for i in np.flatnonzero(dup_of >= 0):
            j = int(dup_of[i])
            sim = _pair_sim(ids, sims, int(i), j)
            removed.append(
                {"id": store.record(int(i)).get(self.cfg.input.id_field, int(i)), "reason": "duplicate",
                 "duplicate_of": store.record(j).get(self.cfg.input.id_field, j), "similarity": sim}
            )
        for i in np.flatnonzero(~valid & (dup_of < 0)):
            removed.append({"id": store.record(int(i)).get(self.cfg.input.id_field, int(i)), "reason": "rejected: embedding is zero or NaN"})
        with open(self.dir / "rejects.jsonl", "rb") as fh:
            for line in fh:
                rej = json.loads(line)
                rej["reason"] = "rejected: " + rej["reason"]
                removed.append(rej)
        _write_jsonl(self.dir / "removed.jsonl", removed)
        return {"files": files, "removed": len(removed), **extra}

    def _write_parallel(self, store: DocStore, order) -> tuple[list[str], dict]:
        """Engine ray: shards of the order serialised by Ray tasks, assembled here (formats/parallel.py)."""
        from .formats.parallel import write_ordered_parallel

        session = self._ray_session()
        workers = self.cfg.engine.workers or session.cpus()
        files, info = write_ordered_parallel(self.dir, store, order, self.cfg.output.formats, self.cfg.input.label_field,
                                             session.mapper(), workers)
        return files, {"engine": "ray", **info}

    def _account(self, n_read: int, store: DocStore, dup_of, valid, order) -> None:
        kept = len(np.unique(order))  # equals len(order) for every order but the repeating kNN baseline
        dups = int((dup_of >= 0).sum())
        bad_emb = int((~valid & (dup_of < 0)).sum())
        rejected = int(self.manifest["stages"]["ingest"]["rejected"]) + bad_emb
        counts = {"records_read": n_read, "kept": kept, "duplicates": dups, "rejected": rejected}
        counts["adds_up"] = kept + dups + rejected == n_read
        counts["coverage"] = kept / n_read if n_read else 0.0
        counts["output_rows"] = int(len(order))
        self.manifest["counts"] = counts
        if len(order) != kept and is_permutation_order(self.cfg.order.algorithm):
            raise RunError("internal error: the order repeats a document")
        if not counts["adds_up"]:
            self._save_manifest()
            raise RunError(f"counts do not add up: kept {kept} + duplicates {dups} + rejected {rejected} != read {n_read}")


def _pack_summary(info: dict) -> dict:
    """The numbers of pack.json worth keeping in the manifest."""
    m = info["metrics"]
    keep = ("waste", "documents_split_share", "within_context_adjacent_similarity", "cut_similarity",
            "within_context_pairwise_similarity", "across_contexts")
    return {"context_length": info["context_length"], "mode": info["mode"], **info["counts"],
            **{k: m[k] for k in keep if k in m}}


def _maybe_crash(point: str) -> None:
    """Fault-injection hook for the crash-safety tests: SIGKILL this process at `point`.

    Only active when the environment variable CONTEXTSORT_CRASH_AT names the point.
    """
    if os.environ.get("CONTEXTSORT_CRASH_AT") == point:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _pair_sim(ids, sims, i: int, j: int) -> float | None:
    for a, b in ((i, j), (j, i)):
        hit = np.flatnonzero(ids[a] == b)
        if len(hit):
            return round(float(sims[a, hit[0]]), 6)
    return None


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run(inputs, run_dir, config: Config | None = None, quiet: bool = True, overwrite: bool = False) -> RunResult:
    """Python API: run the whole pipeline (resuming where possible) and return the result."""
    return Runner(inputs if isinstance(inputs, (list, tuple)) else [inputs], run_dir, config, quiet=quiet, overwrite=overwrite).run()


def pack_run(run_dir, config=None, quiet: bool = True, **options) -> RunResult:
    """Python API: pack the order of an existing run into training contexts (``RUN_DIR/packed``).

    `config` is a `PackConfig`, or pass its fields as keyword options (e.g.
    ``context_length=8192, mode="boundary"``); the run's own config supplies the rest.
    """
    from .config import PackConfig

    run_dir = Path(run_dir)
    mpath = run_dir / "manifest.json"
    if not mpath.exists():
        raise RunError(f"{run_dir}: not a contextsort run (no manifest.json)")
    manifest = json.loads(mpath.read_text())
    cfg = Config.from_dict(manifest.get("config", {}))
    cfg.pack = config or PackConfig()
    for k, v in options.items():
        if k not in PackConfig.__dataclass_fields__:
            raise TypeError(f"unknown pack option {k!r}")
        setattr(cfg.pack, k, v)
    return Runner(manifest.get("inputs", []), run_dir, cfg, quiet=quiet).pack_only()
