"""Memory and time of the hybrid signal alone, on a finished run directory (prints JSON).

Replays the part of the neighbors stage after the dense kNN: lexical vectors from the run's
token store, the lexical kNN, and the hybrid merge, with the run's embeddings memory-mapped.
The dense lists given to the hybrid are the run's `dedup_ids/sims` (the dense kNN at --k; a
stand-in for the walk lists, which a run does not keep), so the output is not the run's
`knn_ids`; it is the same for any code that computes the same graph, which is what the
digest is for: run this twice, once on the old source tree, once on the new, and compare.

    PYTHONPATH=src python benchmarks/lexical_memory.py /work/cache/memlex/run --k 16

It does what the stage does after its dense kNN: the token store is let go once the
vectors are built, the graph is written over the dense lists (`overwrite_dense`), and the
embeddings are read the way the source tree under test reads them (`rowfile.RowFile`, explicit
reads, where it exists; a memory map before). Peak RSS is this process's VmHWM; `added_mb` is
the peak above the baseline (imports done, dense lists loaded). A sampler thread notes the
anonymous / file-backed split (/proc/self/status RssAnon / RssFile) at the highest sample.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np


def vm_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_fields() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile (kB) of this process."""
    out = {}
    for line in open("/proc/self/status"):
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1])
    return out


class Sampler(threading.Thread):
    """The /proc/self/status sample with the highest VmRSS, every `interval` seconds."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True)
        self.interval, self.top, self.stop = interval, {"VmRSS": 0}, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            f = rss_fields()
            if f.get("VmRSS", 0) > self.top["VmRSS"]:
                self.top = f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a finished run directory (tokens/, embeddings.npy, dedup_ids.npy)")
    ap.add_argument("--k", type=int, default=16, help="neighbours kept (the default --walk-k)")
    ap.add_argument("--weighting", default="tfidf")
    ap.add_argument("--weight", type=float, default=None)
    ap.add_argument("--first", type=int, default=0, help="only the first N documents; their dense lists are then "
                    "searched here (FAISS, cached in --dense-cache) instead of read from the run")
    ap.add_argument("--dense-cache", default="/tmp/lexical_memory_dense.npz")
    a = ap.parse_args()

    from contextsort.pack import TokenStream
    from contextsort.similarity import DEFAULT_HYBRID_WEIGHT, lexical_vectors_from_ids, similarity_graph
    from contextsort.tokenizer import get_tokenizer
    from contextsort.tokens import content_spans

    run = Path(a.run)
    emb = np.load(run / "embeddings.npy", mmap_mode="r")
    try:  # the source tree under test reads rows explicitly (this change) or maps them (before)
        from contextsort.rowfile import RowFile
    except ImportError:
        RowFile = None
    if a.first:
        emb = emb[: a.first]
        cache = Path(a.dense_cache)
        if cache.exists() and np.load(cache)["ids"].shape[0] == a.first:
            d_ids, d_sims = np.load(cache)["ids"], np.load(cache)["sims"]
        else:
            from contextsort.neighbors import knn_graph

            d_ids, d_sims, _ = knn_graph(np.asarray(emb), k=a.k)
            np.savez(cache, ids=d_ids, sims=d_sims)
    else:
        d_ids = np.load(run / "dedup_ids.npy")
        d_sims = np.load(run / "dedup_sims.npy")
    n = emb.shape[0]
    if RowFile is not None:
        emb = RowFile(run / "embeddings.npy", rows=n)
    # [n, k] lists as the stage's walk lists (written over by the graph); the run's dedup lists
    # have --k 10 columns: the rest is padding (-1, skipped by the rescoring: same graph)
    pad_ids, pad_sims = np.full((n, a.k), -1, dtype=np.int64), np.zeros((n, a.k), dtype=np.float32)
    w = min(a.k, d_ids.shape[1])
    pad_ids[:, :w], pad_sims[:, :w] = d_ids[:, :w], d_sims[:, :w]
    d_ids, d_sims = pad_ids, pad_sims
    del pad_ids, pad_sims
    tok = get_tokenizer("llama2")
    base = vm_kb("VmRSS")
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    stream = TokenStream.open(run / "tokens")
    start, length = content_spans(stream)
    lex = lexical_vectors_from_ids(stream.tokens, start[:n], np.asarray(length[:n]), tok, a.weighting)
    del stream, start, length  # as the stage: the token store is let go once the vectors are built
    t1 = time.perf_counter()
    ids, sims, info = similarity_graph("hybrid", emb, None, a.k, weighting=a.weighting,
                                       weight=DEFAULT_HYBRID_WEIGHT if a.weight is None else a.weight,
                                       dense_knn=(d_ids, d_sims), lexical=lex, overwrite_dense=True)
    t2 = time.perf_counter()
    sampler.stop.set()
    sampler.join()
    peak = vm_kb("VmHWM")
    digest = hashlib.sha256(np.ascontiguousarray(ids).tobytes() + np.ascontiguousarray(sims).tobytes()).hexdigest()[:16]
    print(json.dumps({
        "n": int(n), "k": a.k, "lexical_nnz": int(lex.nnz),
        "baseline_rss_mb": round(base / 1024, 1), "peak_rss_mb": round(peak / 1024, 1),
        "added_mb": round((peak - base) / 1024, 1),
        "at_highest_sample_mb": {key: round(v / 1024, 1) for key, v in sampler.top.items()},
        "embeddings": "explicit reads (rowfile)" if RowFile is not None else "memory map",
        "vectors_seconds": round(t1 - t0, 1), "graph_seconds": round(t2 - t1, 1),
        "params": info.params, "digest": digest,
    }, indent=1))


if __name__ == "__main__":
    main()
