"""ingest: stream every input record into the document store, or into the reject list with why."""

from __future__ import annotations

import shutil

from ..atomic import write_jsonl
from ..corpus import file_digest, fingerprint_inputs
from ..errors import InputError
from ..parallel_ingest import PARTS_DIR, ReadOptions, ingest_inputs, piece_sizes
from ..pipeline import RunContext, Stage
from ..progress import log, progress
from ..remote import fingerprint_local_tree, fingerprint_urls, is_hf_saved_dataset, is_url, local_path, localize, url_of

STORE_FILES = ["store/records.jsonl", "store/records.idx.npy", "store/text.bin", "store/text.idx.npy",
               "store/text_hash.npy", "store/label_codes.npy", "store/label_names.json", "store/fields.json"]


class IngestStage(Stage):
    name = "ingest"
    version = 7  # the store layout (7: text_hash is XXH64 of the key): bumped when it changes, so old run directories are re-ingested
    reads = ("input",)

    def produces(self, cfg):
        return {"store": STORE_FILES, "rejects": ["rejects.jsonl"]}

    def key(self, ctx: RunContext) -> object:
        # local files by content (folders walked without the run directory: a run never reads
        # its own outputs); URL inputs (s3://, hf://...) by
        # their listing's checksums, without downloading them; saved HF datasets by their files
        def make() -> str:
            urls = [str(p) for p in ctx.inputs if is_url(p) and not str(p).startswith("file://")]
            paths = [local_path(p) for p in ctx.inputs if str(p) not in urls]
            hf = [p for p in paths if is_hf_saved_dataset(p)]
            local = fingerprint_inputs([p for p in paths if p not in hf], exclude=[ctx.run_dir.path])
            extra = ([fingerprint_urls(urls)] if urls else []) + [fingerprint_local_tree(p) for p in hf]
            return "+".join([local, *extra])
        return ctx.cached("input_fingerprint", make)

    def run(self, ctx: RunContext) -> dict:
        cfg = ctx.cfg.input
        if not ctx.inputs:
            raise InputError("no input given")
        downloads = ctx.path("remote_inputs")
        inputs, origin = localize([str(p) for p in ctx.inputs], downloads)  # URLs copied here, read locally
        try:
            return self.ingest(ctx, inputs, origin)
        finally:
            shutil.rmtree(downloads, ignore_errors=True)  # the store now holds every document

    def ingest(self, ctx: RunContext, inputs: list[str], origin: dict[str, str]) -> dict:
        cfg = ctx.cfg.input
        opts = ReadOptions(cfg.text_field, cfg.id_field, cfg.label_field, cfg.strict)
        piece_bytes, rows_per_piece = piece_sizes(inputs, ctx.engine.workers())
        with progress(None, "ingest") as bar:
            res = ingest_inputs(inputs, ctx.path("store"), ctx.path(PARTS_DIR), opts, exclude=[ctx.run_dir.path],
                                mapper=None if ctx.engine.name == "local" else ctx.engine.map, piece_bytes=piece_bytes, rows_per_piece=rows_per_piece,
                                source_name=lambda s: url_of(s, origin), progress=bar.update)
        writer, rejects, n = res.writer, res.rejects, res.records_read
        write_jsonl(ctx.path("rejects.jsonl"), (r.to_json() for r in rejects))
        if writer.n == 0:
            why = "; ".join(f"{r.source}" + (f":{r.line}" if r.line else "") + f": {r.reason}" for r in rejects[:3])
            raise InputError(f"no usable documents in the input ({n} records read, {len(rejects)} rejected"
                             + (f": {why}" if why else "") + ")")
        for c in res.counts:
            if c.documents == 0:  # a wrong field name for that file, a path that yields nothing
                log.warning(f"contextsort: warning: {c.input}: no usable document ({c.records} records read, "
                            f"{c.rejected} rejected; see removed.jsonl)")
        if rejects:
            log.info(f"[ingest] {len(rejects)} of {n} records rejected (see rejects.jsonl / removed.jsonl)")
        return {"input_fingerprint": self.key(ctx), "records_read": n, "documents": writer.n, "rejected": len(rejects), "content_hash": writer.content_hash,
                "inputs": [c.to_json() for c in res.counts], "pieces": res.pieces,
                "artifact_fingerprints": {"store": writer.content_hash, "rejects": file_digest(ctx.path("rejects.jsonl"))}}
