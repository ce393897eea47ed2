"""ingest: stream every input record into the document store, or into the reject list with why."""

from __future__ import annotations

from ..atomic import write_jsonl
from ..corpus import CorpusReader, DocStoreWriter, Reject, file_digest, fingerprint_inputs
from ..errors import InputError
from ..pipeline import RunContext, Stage
from ..progress import log, progress

STORE_FILES = ["store/records.jsonl", "store/records.idx.npy", "store/text.bin", "store/text.idx.npy",
               "store/text_hash.npy", "store/label_codes.npy", "store/label_names.json", "store/fields.json"]


class IngestStage(Stage):
    name = "ingest"
    version = 5  # the store layout: bumped when it changes, so old run directories are re-ingested
    reads = ("input",)

    def produces(self, cfg):
        return {"store": STORE_FILES, "rejects": ["rejects.jsonl"]}

    def key(self, ctx: RunContext) -> object:
        # the inputs' content (not their mtime): an edit that keeps size and mtime is still seen
        # folders are walked without the run directory: a run never reads its own outputs
        return ctx.cached("input_fingerprint", lambda: fingerprint_inputs(ctx.inputs, exclude=[ctx.run_dir.path]))

    def run(self, ctx: RunContext) -> dict:
        cfg = ctx.cfg.input
        if not ctx.inputs:
            raise InputError("no input given")
        reader = CorpusReader(ctx.inputs, cfg.text_field, cfg.id_field, cfg.label_field, cfg.strict,
                              exclude=[ctx.run_dir.path])
        writer = DocStoreWriter(ctx.path("store"), cfg.label_field, cfg.id_field)
        rejects: list[Reject] = []
        n = 0
        with progress(None, "ingest") as bar:
            for item in reader:
                n += 1
                if isinstance(item, Reject):
                    rejects.append(item)
                else:
                    writer.add(item)
                bar.update(1)
        rejects.extend(writer.close(strict=cfg.strict))  # records whose id was already used
        write_jsonl(ctx.path("rejects.jsonl"), (r.to_json() for r in rejects))
        if writer.n == 0:
            why = "; ".join(f"{r.source}" + (f":{r.line}" if r.line else "") + f": {r.reason}" for r in rejects[:3])
            raise InputError(f"no usable documents in the input ({n} records read, {len(rejects)} rejected"
                             + (f": {why}" if why else "") + ")")
        for c in reader.counts:
            if c.documents == 0:  # a wrong field name for that file, a path that yields nothing
                log.warning(f"contextsort: warning: {c.input}: no usable document ({c.records} records read, "
                            f"{c.rejected} rejected; see removed.jsonl)")
        if rejects:
            log.info(f"[ingest] {len(rejects)} of {n} records rejected (see rejects.jsonl / removed.jsonl)")
        return {"input_fingerprint": self.key(ctx), "records_read": n, "documents": writer.n, "rejected": len(rejects), "content_hash": writer.content_hash,
                "inputs": [c.to_json() for c in reader.counts],
                "artifact_fingerprints": {"store": writer.content_hash, "rejects": file_digest(ctx.path("rejects.jsonl"))}}
