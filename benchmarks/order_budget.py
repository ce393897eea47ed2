"""The order stage's share of a default run's end-to-end time, at 100k and 1M documents.

Synthetic clustered kNN graphs (benchmarks/traversal.py: neighbours inside clusters of 100,
10% across) with k = the walk's neighbours. The order stage = graph_from_knn + the order
(median of --repeats, compiled). The end-to-end estimate counts only embedding, at
the default embedder's rate measured in the same run (wordllama on 2,000 BBC articles;
--embed-rate overrides it), plus the order stage itself, both in wall seconds (`share`) and
in CPU seconds of this process (`share_cpu`: less sensitive to other jobs on the machine); every other stage only adds
time, so the reported share is an upper bound. Ratios within one run are comparable
on a loaded machine; absolute seconds are not.

    PYTHONPATH=src python benchmarks/order_budget.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from traversal import synthetic_knn  # noqa: E402

from contextsort.graph import graph_from_knn  # noqa: E402
from contextsort.metrics import path_bound, path_edge_weights  # noqa: E402
from contextsort.order import compute_order  # noqa: E402

ORDERS = {  # name -> (order, options)
    "paper": ("paper", {}),
    "improved (before: 3 candidates, no Or-opt)": ("improved", {"candidates": 3, "or_opt_segment": 0}),
    "improved (default)": ("improved", {}),
}


def embed_rate(n: int = 2000) -> tuple[float, float]:
    """Documents per wall second and per CPU second (all threads) of the default embedder
    (wordllama) on BBC articles, after a warm-up."""
    from contextsort.embed import get_embedder
    from contextsort.sample import bbc_news_path

    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(bbc_news_path().rglob("*.txt"))][:n]
    emb = get_embedder("wordllama")
    emb.encode(texts[:64])
    t, c = time.perf_counter(), time.process_time()
    for s in range(0, len(texts), 256):
        emb.encode(texts[s : s + 256])
    return len(texts) / (time.perf_counter() - t), len(texts) / (time.process_time() - c)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--k", type=int, nargs="+", default=[10, 24])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--embed-rate", type=float, default=None, help="documents/s of the default embedder (default: measured)")
    a = ap.parse_args()
    wall_rate, cpu_rate = (a.embed_rate, a.embed_rate) if a.embed_rate else embed_rate()
    ids, sims = synthetic_knn(2000, 10, "clustered")
    g = graph_from_knn(ids, sims)
    for name, opts in ORDERS.values():  # compile
        compute_order(name, g, **opts)
    rows = []
    for n in a.sizes:
        for k in a.k:
            ids, sims = synthetic_knn(n, k, "clustered")
            t, c = time.perf_counter(), time.process_time()
            g = graph_from_knn(ids, sims)
            build, build_cpu = time.perf_counter() - t, time.process_time() - c
            bound = path_bound(g)
            for label, (name, opts) in ORDERS.items():
                times, cpu = [], []
                for _ in range(a.repeats):
                    t, c = time.perf_counter(), time.process_time()
                    order = compute_order(name, g, **opts)
                    times.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
                assert np.array_equal(np.sort(order), np.arange(n))
                stage = build + statistics.median(times)
                stage_cpu = build_cpu + statistics.median(cpu)
                end_to_end = n / wall_rate + stage
                end_to_end_cpu = n / cpu_rate + stage_cpu
                rows.append({"n": n, "k": k, "order": label, "graph_build_s": round(build, 3),
                             "order_s_median": round(statistics.median(times), 3), "stage_s": round(stage, 3),
                             "end_to_end_estimate_s": round(end_to_end, 1), "share": round(stage / end_to_end, 4),
                             "stage_cpu_s": round(stage_cpu, 3), "share_cpu": round(stage_cpu / end_to_end_cpu, 4),
                             "path_ratio": round(float(path_edge_weights(g, order).sum() / bound), 4)})
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"benchmark": "order_budget", "embed_docs_per_s": round(wall_rate, 1), "embed_docs_per_cpu_s": round(cpu_rate, 1), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
