"""Throughput of tokenise + pack + write (the `tokenize` and `pack` stages), JSON out.

    python benchmarks/pack.py [--repeat 8] [--context-length 8192] [--mode concat]
                              [--formats megatron,parquet,numpy] [--tokenizer llama2] [--out FILE]

The corpus is the BBC News sample (2,225 articles, about 1.25M Llama-2 tokens) repeated
`--repeat` times, in a random order (the order does not matter for speed). Reports tokens/s
of each phase and of the whole; the target is >= 1M tokens/s on 2 cores with the default
tokenizer. The machine's load average is recorded: other processes on the same cores make
the numbers lower.
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--context-length", type=int, default=8192)
    ap.add_argument("--mode", default="concat", choices=["concat", "boundary"])
    ap.add_argument("--formats", default="megatron,parquet,numpy")
    ap.add_argument("--tokenizer", default="llama2")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args(argv)

    texts = bbc_texts() * a.repeat
    store = MemoryStore(texts)
    tok = get_tokenizer(a.tokenizer)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    link_sims = rng.uniform(0, 1, max(0, len(texts) - 1)) if a.mode == "boundary" else None
    formats = [f for f in a.formats.split(",") if f]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        meta = tokenize_store(store, tok, tmp / "tokens")
        t1 = time.perf_counter()
        stream = TokenStream.open(tmp / "tokens")
        info = pack_contexts(stream, order, tmp / "packed", context_length=a.context_length, mode=a.mode,
                             formats=formats, link_sims=link_sims, seed=0)
        t2 = time.perf_counter()
        out_bytes = sum(f.stat().st_size for f in (tmp / "packed").rglob("*") if f.is_file())
    tokens = meta["tokens"]
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
        "seconds": {"tokenize": round(t1 - t0, 3), "pack_write": round(t2 - t1, 3), "total": round(t2 - t0, 3)},
        "tokens_per_second": {
            "tokenize": round(tokens / (t1 - t0)),
            "pack_write": round(tokens / (t2 - t1)),
            "total": round(tokens / (t2 - t0)),
        },
        "target_tokens_per_second": 1_000_000,
        "meets_target": tokens / (t2 - t0) >= 1_000_000,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_before_after": None,
        "python": platform.python_version(),
    }
    try:
        result["load_average"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        pass
    result.pop("load_average_before_after")
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
