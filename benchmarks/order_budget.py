"""The order stage's share of a default run's end-to-end time, at 100k and 1M documents.

Synthetic clustered kNN graphs (benchmarks/traversal.py: neighbours inside clusters of 100,
10% across) with k = the walk's neighbours. The order stage = graph_from_knn + the order
(median of --repeats, compiled). The end-to-end estimate counts only embedding, at
--embed-rate documents/s (wordllama on this machine: about 1,600/s), plus the order stage
itself; every other stage only adds time, so the reported share is an upper bound.

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
    "improved (before: 3 candidates, no Or-opt)": ("improved", {"candidates": 3, "or_opt": 0}),
    "improved (default)": ("improved", {}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--k", type=int, nargs="+", default=[10, 24])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--embed-rate", type=float, default=1600.0, help="documents/s of the default embedder")
    a = ap.parse_args()
    ids, sims = synthetic_knn(2000, 10, "clustered")
    g = graph_from_knn(ids, sims)
    for name, opts in ORDERS.values():  # compile
        compute_order(name, g, **opts)
    rows = []
    for n in a.sizes:
        for k in a.k:
            ids, sims = synthetic_knn(n, k, "clustered")
            t = time.perf_counter()
            g = graph_from_knn(ids, sims)
            build = time.perf_counter() - t
            bound = path_bound(g)
            for label, (name, opts) in ORDERS.items():
                times = []
                for _ in range(a.repeats):
                    t = time.perf_counter()
                    order = compute_order(name, g, **opts)
                    times.append(time.perf_counter() - t)
                assert np.array_equal(np.sort(order), np.arange(n))
                stage = build + statistics.median(times)
                end_to_end = n / a.embed_rate + stage
                rows.append({"n": n, "k": k, "order": label, "graph_build_s": round(build, 3),
                             "order_s_median": round(statistics.median(times), 3), "stage_s": round(stage, 3),
                             "end_to_end_estimate_s": round(end_to_end, 1), "share": round(stage / end_to_end, 4),
                             "path_ratio": round(float(path_edge_weights(g, order).sum() / bound), 4)})
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"benchmark": "order_budget", "embed_rate": a.embed_rate, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
