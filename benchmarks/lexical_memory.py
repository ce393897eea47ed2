"""Memory and time of the hybrid signal alone, on a finished run directory (prints JSON).

Replays the part of the neighbors stage after the dense kNN: lexical vectors from the run's
token store, the lexical kNN, and the hybrid merge, with the run's embeddings memory-mapped.
The dense lists given to the hybrid are the run's `dedup_ids/sims` (the dense kNN at --k; a
stand-in for the walk lists, which a run does not keep), so the output is not the run's
`knn_ids`; it is the same for any code that computes the same graph, which is what the
digest is for: run this twice, once on the old source tree, once on the new, and compare.

    PYTHONPATH=src python benchmarks/lexical_memory.py /work/cache/memlex/run --k 16

Peak RSS is this process's VmHWM (the embeddings are touched first, so the baseline
includes them, as in a run); `added_mb` is the peak above that baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np


def vm_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


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
    for s in range(0, emb.shape[0], 65536):  # touch every page: the baseline holds the embeddings
        np.asarray(emb[s : s + 65536]).max()
    stream = TokenStream.open(run / "tokens")
    start, length = content_spans(stream)
    if a.first:
        start, length = start[: a.first], length[: a.first]
    base = vm_kb("VmRSS")
    t0 = time.perf_counter()
    lex = lexical_vectors_from_ids(stream.tokens, start, np.asarray(length), get_tokenizer("llama2"), a.weighting)
    t1 = time.perf_counter()
    ids, sims, info = similarity_graph("hybrid", emb, None, a.k, weighting=a.weighting,
                                       weight=DEFAULT_HYBRID_WEIGHT if a.weight is None else a.weight,
                                       dense_knn=(d_ids, d_sims), lexical=lex)
    t2 = time.perf_counter()
    peak = vm_kb("VmHWM")
    digest = hashlib.sha256(np.ascontiguousarray(ids).tobytes() + np.ascontiguousarray(sims).tobytes()).hexdigest()[:16]
    print(json.dumps({
        "n": int(emb.shape[0]), "k": a.k, "lexical_nnz": int(lex.nnz),
        "baseline_rss_mb": round(base / 1024, 1), "peak_rss_mb": round(peak / 1024, 1),
        "added_mb": round((peak - base) / 1024, 1),
        "vectors_seconds": round(t1 - t0, 1), "graph_seconds": round(t2 - t1, 1),
        "params": info.params, "digest": digest,
    }, indent=1))


if __name__ == "__main__":
    main()
