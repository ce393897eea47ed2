"""Throughput of tokenise + pack + write (the `tokenize` and `pack` stages), JSON out.

    python benchmarks/pack.py [--repeat 8] [--runs 3] [--context-length 8192] [--mode concat]
                              [--formats megatron,parquet,numpy] [--tokenizer llama2] [--out FILE]
    python benchmarks/pack.py --compare-modes [--out FILE]

Throughput (default): the corpus is the BBC News sample (2,225 articles, about 1.25M
Llama-2 tokens) repeated `--repeat` times, in a random order (the order does not matter for
speed). Reports tokens/s of each phase and of the whole, wall-clock and per CPU-second (all
threads), beside the load average: other processes on the same cores lower the wall-clock
numbers, the CPU-second ones much less. Target: >= 1M tokens/s on 2 cores, default tokenizer.

--compare-modes: runs the pipeline on the BBC sample once, then packs its order with each
mode at L = 2048 and 8192 and reports the quality of each packing: within-context adjacent
similarity, similarity of the links cut, pairwise similarity inside contexts, share of
documents split, padding (waste), and the shuffle check (similarity of consecutive contexts
against random pairs).
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from contextsort.pack import TokenStream, pack_contexts, tokenize_store  # noqa: E402
from contextsort.tokenizer import get_tokenizer  # noqa: E402


class MemoryStore:
    """The part of DocStore that tokenisation reads: len, txt_off and texts(start, stop)."""

    def __init__(self, texts: list[str]):
        self._texts = texts
        sizes = np.fromiter((len(t.encode("utf-8")) for t in texts), dtype=np.int64, count=len(texts))
        self.txt_off = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.txt_off[1:])

    def __len__(self) -> int:
        return len(self._texts)

    def texts(self, start: int, stop: int) -> list[str]:
        return self._texts[start:stop]


def bbc_texts() -> list[str]:
    from contextsort.sample import bbc_news_path

    return [p.read_text(encoding="utf-8", errors="replace") for p in sorted(bbc_news_path().rglob("*.txt"))]


def compare_modes(lengths=(2048, 8192)) -> dict:
    import contextsort
    from contextsort.config import Config

    from contextsort.sample import bbc_news_path

    out = {"benchmark": "pack-modes", "corpus": "BBC News sample", "tokenizer": "llama2", "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        run = contextsort.run([bbc_news_path()], Path(tmp) / "run", Config())
        out["documents"] = run.counts["kept"]
        out["adjacent_similarity"] = run.metrics["adjacent_similarity"]
        for L in lengths:
            for mode in ("concat", "boundary"):
                t = time.perf_counter()
                contextsort.pack_run(run.run_dir, context_length=L, mode=mode, formats=["numpy"])
                secs = time.perf_counter() - t
                info = json.loads((run.run_dir / "packed" / "pack.json").read_text())
                m = info["metrics"]
                out["results"].append({
                    "context_length": L, "mode": mode, "contexts": info["counts"]["contexts"],
                    "waste": round(m["waste"], 4),
                    "documents_split_share": round(m["documents_split_share"], 4),
                    "within_context_adjacent_similarity": round(m["within_context_adjacent_similarity"], 4),
                    "cut_similarity": round(m["cut_similarity"], 4),
                    "links_kept_share": round(m["links_kept_share"], 4),
                    "within_context_pairwise_similarity": round(m["within_context_pairwise_similarity"], 4),
                    "across_contexts": {k: round(v, 4) for k, v in m["across_contexts"].items()},
                    "seconds": round(secs, 2),
                })
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=8, help="copies of the BBC texts (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs; medians reported (default: %(default)s)")
    ap.add_argument("--context-length", type=int, default=8192)
    ap.add_argument("--mode", default="concat", choices=["concat", "boundary"])
    ap.add_argument("--formats", default="megatron,parquet,numpy")
    ap.add_argument("--tokenizer", default="llama2")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--compare-modes", action="store_true", help="quality of concat vs boundary packing on the BBC sample")
    a = ap.parse_args(argv)
    if a.compare_modes:
        return _emit(compare_modes(), a.out)

    texts = bbc_texts() * a.repeat
    store = MemoryStore(texts)
    tok = get_tokenizer(a.tokenizer)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    link_sims = rng.uniform(0, 1, max(0, len(texts) - 1)) if a.mode == "boundary" else None
    formats = [f for f in a.formats.split(",") if f]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # warm-up: numba compiles (cached) and the tokenizer's first call
        warm = MemoryStore(texts[:50])
        tokenize_store(warm, tok, tmp / "warm")
        pack_contexts(TokenStream.open(tmp / "warm"), np.arange(50), tmp / "warm_packed", context_length=a.context_length,
                      mode=a.mode, formats=formats, link_sims=np.zeros(49) if a.mode == "boundary" else None)
        load0 = os.getloadavg()[0]
        wall, cpu = [], []
        for r in range(a.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            meta = tokenize_store(store, tok, tmp / "tokens")
            t1, c1 = time.perf_counter(), time.process_time()
            stream = TokenStream.open(tmp / "tokens")
            info = pack_contexts(stream, order, tmp / "packed", context_length=a.context_length, mode=a.mode,
                                 formats=formats, link_sims=link_sims, seed=0)
            t2, c2 = time.perf_counter(), time.process_time()
            wall.append((t1 - t0, t2 - t1, t2 - t0))
            cpu.append((c1 - c0, c2 - c1, c2 - c0))
        out_bytes = sum(f.stat().st_size for f in (tmp / "packed").rglob("*") if f.is_file())
    tokens = meta["tokens"]
    w = np.median(np.asarray(wall), axis=0)  # medians over runs: tokenize, pack_write, total
    c = np.median(np.asarray(cpu), axis=0)
    phases = ("tokenize", "pack_write", "total")
    result = {
        "benchmark": "pack",
        "tokenizer": tok.name,
        "documents": len(texts),
        "tokens": tokens,
        "context_length": a.context_length,
        "mode": a.mode,
        "formats": formats,
        "contexts": info["counts"]["contexts"],
        "output_bytes": out_bytes,
        "runs": a.runs,
        "seconds_median": {k: round(float(v), 3) for k, v in zip(phases, w)},
        "tokens_per_second_median": {k: round(tokens / float(v)) for k, v in zip(phases, w)},
        "cpu_seconds_median": {k: round(float(v), 3) for k, v in zip(phases, c)},
        "tokens_per_cpu_second_median": {k: round(tokens / float(v)) for k, v in zip(phases, c)},
        "total_seconds_each_run": [round(x[2], 3) for x in wall],
        "target_tokens_per_second": 1_000_000,
        "meets_target": tokens / float(w[2]) >= 1_000_000,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1min": {"before": round(load0, 2), "after": round(os.getloadavg()[0], 2)},
        "python": platform.python_version(),
    }
    return _emit(result, a.out)


def _emit(result: dict, out: str | None) -> int:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
