"""Command line: `contextsort run`, `contextsort demo`."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .config import Config


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    d = Config()
    g = p.add_argument_group("input")
    g.add_argument("--text-field", default=d.input.text_field, help="field holding the document text (default: %(default)s)")
    g.add_argument("--id-field", default=d.input.id_field, help="field holding the document id; missing ids get their position (default: %(default)s)")
    g.add_argument("--label-field", default=d.input.label_field, help="optional field with a label, used for label_agreement (default: %(default)s)")
    g.add_argument("--strict", action="store_true", help="stop at the first bad record (exit 2) instead of rejecting it")
    g = p.add_argument_group("pipeline")
    g.add_argument("--embedder", default=d.embed.embedder, help="embedder spec (default: %(default)s)")
    g.add_argument("--device", default=d.embed.device, choices=["auto", "cpu", "cuda"], help="where neural embedders run; fp16 on GPU (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=d.embed.batch_size, help="documents per embedding batch (default: the embedder's: 512 wordllama, 32 neural on CPU, 256 on GPU)")
    g.add_argument("--embed-dtype", default=d.embed.dtype, choices=["float32", "float16"], help="dtype of the embeddings file in the run directory (default: %(default)s)")
    g.add_argument("--k", type=int, default=d.knn.k, help="neighbours per document (default: %(default)s, as in the paper)")
    g.add_argument("--index", default=d.knn.index, choices=["auto", "flat", "ivf", "hnsw", "ivfpq"], help="FAISS index (default: %(default)s: exact below 50k documents, IVF above)")
    g.add_argument("--nprobe", type=int, default=None, help="IVF lists probed per query (default: chosen from N)")
    g.add_argument("--dedup-threshold", type=float, default=d.dedup.threshold, help="cosine at or above which documents are near-duplicates (default: %(default)s; >1 disables)")
    g.add_argument("--no-exact-dedup", action="store_true", help="do not remove exact (normalised-text) duplicates")
    g.add_argument("--order", default=d.order.algorithm, help="ordering algorithm (default: %(default)s = the paper's Algorithm 1)")
    g.add_argument("--seed", type=int, default=d.seed)
    g = p.add_argument_group("output")
    g.add_argument("--format", default=",".join(d.output.formats), help="comma-separated output formats (default: %(default)s)")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty directory that is not a contextsort run")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or stage log")


def config_from_args(a: argparse.Namespace) -> Config:
    c = Config()
    c.input.text_field = a.text_field
    c.input.id_field = a.id_field
    c.input.label_field = a.label_field or None
    c.input.strict = a.strict
    c.embed.embedder = a.embedder
    c.embed.device = a.device
    c.embed.batch_size = a.batch_size
    c.embed.dtype = a.embed_dtype
    c.knn.k = a.k
    c.knn.index = a.index
    c.knn.nprobe = a.nprobe
    c.dedup.threshold = a.dedup_threshold
    c.dedup.exact = not a.no_exact_dedup
    c.order.algorithm = a.order
    c.seed = a.seed
    c.output.formats = [f.strip() for f in a.format.split(",") if f.strip()]
    return c


def summary(result) -> str:
    c = result.counts
    m = result.metrics
    lines = [
        f"run directory     {result.run_dir}",
        f"documents         read {c['records_read']}, kept {c['kept']}, duplicates {c['duplicates']}, rejected {c['rejected']}"
        f" ({'adds up' if c['adds_up'] else 'DOES NOT ADD UP'})",
    ]
    a = m.get("adjacent_similarity")
    if a:
        lines.append(f"adjacent_similarity  ordered {a['ordered']:.4f}   random {a['random']:.4f}")
    la = m.get("label_agreement")
    if la:
        lines.append(f"label_agreement      ordered {la['ordered']:.4f}   random {la['random']:.4f}   lift {la['lift']:.2f}x")
    pw = m.get("path_weight")
    if pw:
        lines.append(f"path_weight          {pw['sum']:.1f} (mean {pw['mean']:.4f}/step, {pw['jumps']} jumps), bound {pw['bound']:.1f}, ratio {pw['ratio']:.3f}")
    t = {k: v.get("seconds") for k, v in result.manifest["stages"].items()}
    lines.append("stage seconds     " + ", ".join(f"{k} {v}" for k, v in t.items()) + (f"  (reused: {', '.join(result.skipped)})" if result.skipped else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="contextsort", description="Order a pretraining corpus the In-Context Pretraining way.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run the whole pipeline on a corpus")
    p_run.add_argument("inputs", nargs="+", help="JSONL (.gz/.zst), Parquet files or folders (of those, or of .txt files)")
    p_run.add_argument("-o", "--output", required=True, help="run directory (created; rerunning resumes)")
    _add_pipeline_options(p_run)

    p_demo = sub.add_parser("demo", help="run the pipeline on the built-in BBC News sample and print a summary")
    p_demo.add_argument("-o", "--output", default="runs/demo", help="run directory (default: %(default)s)")
    _add_pipeline_options(p_demo)

    a = parser.parse_args(argv)
    return _dispatch(a)


def _dispatch(a: argparse.Namespace) -> int:
    from .corpus import InputError
    from .embed import EmbedderUnavailable
    from .runner import RunError, Runner
    from .sample import SampleUnavailable, bbc_news_path

    try:
        cfg = config_from_args(a)
        if a.command == "demo":
            inputs = [bbc_news_path()]
        else:
            inputs = a.inputs
        t = time.perf_counter()
        result = Runner(inputs, a.output, cfg, quiet=a.quiet, overwrite=a.overwrite).run()
        print(summary(result))
        if a.command == "demo":
            print(f"total             {time.perf_counter() - t:.2f}s; outputs in {result.run_dir}/ordered.jsonl, removed.jsonl, manifest.json")
        return 0
    except (InputError, RunError, EmbedderUnavailable, SampleUnavailable, ValueError) as e:
        print(f"contextsort: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("contextsort: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
