"""Seconds and peak RSS of the metrics stage of a finished run, for two or more checkouts,
alternated; JSON out.

    python benchmarks/metrics_stage.py RUN_DIR --src /tmp/before/src --src src [--pairs 3]

Each timing is a fresh process that first calls the numba kernels once on a tiny graph (as
the stages before metrics did in a run), then runs `MetricsStage.run` on RUN_DIR with its
metrics.json written to a temporary directory (RUN_DIR is not changed). Checkouts are
alternated (A B A B ...) so that a shared machine's load swings hit both alike; quote the
ratio of medians. Also printed per checkout: the stage's path_weight block (bound, its
method and steps) and the peak RSS (ru_maxrss) of the process, with the RSS before the
stage beside it. `--rss-only` skips the warm-up and the pairs: one run per checkout, for
memory at 1M.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
from contextsort.config import Config
from contextsort.pipeline import RunContext
from contextsort.stages.metrics import MetricsStage
run, out, warm = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
if warm:
    from contextsort.graph import graph_from_knn, restrict_knn
    from contextsort.metrics import adjacent_similarity, path_bound, path_weight
    ids = np.load(run / "knn_ids.npy", mmap_mode="r")[:100] % 100
    sims = np.asarray(np.load(run / "knn_sims.npy", mmap_mode="r")[:100])
    g = graph_from_knn(*restrict_knn(ids, sims, np.full(100, -1), np.ones(100, bool)))
    path_weight(g, np.arange(100)); path_bound(g)
    adjacent_similarity(np.load(run / "embeddings.npy", mmap_mode="r")[:10], np.arange(10))


class Context(RunContext):
    def path(self, rel):  # read the run, write metrics.json elsewhere
        return out / rel if rel == "metrics.json" else run / rel


rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ctx = Context(None, Config(), None, [], json.loads((run / "manifest.json").read_text()))
t = time.perf_counter()
values = MetricsStage().run(ctx)["values"]
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "path_weight": values["path_weight"],
                  "adjacent_similarity": values["adjacent_similarity"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_stage_mib": rss_before / 1024}))
"""


def run_child(run_dir: str, src: str, warm: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run([sys.executable, "-c", CHILD, run_dir, tmp, "1" if warm else "0"], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(Path(src).resolve())})
    if p.returncode != 0:
        raise SystemExit(f"{src}: {p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--src", action="append", required=True, help="a checkout's src/ directory (one or more)")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--rss-only", action="store_true", help="one cold run per checkout (memory, large runs)")
    a = ap.parse_args()
    seconds: dict[str, list[float]] = {s: [] for s in a.src}
    last: dict[str, dict] = {}
    for _ in range(1 if a.rss_only else a.pairs):
        for src in a.src:
            r = run_child(a.run_dir, src, warm=not a.rss_only)
            seconds[src].append(round(r["seconds"], 3))
            last[src] = r
    med = {s: sorted(v)[len(v) // 2] for s, v in seconds.items()}
    first = a.src[0]
    print(json.dumps({"seconds": seconds, "median": med,
                      "median_vs_first": {s: round(m / med[first], 3) for s, m in med.items()},
                      "path_weight": {s: r["path_weight"] for s, r in last.items()},
                      "adjacent_similarity": {s: r["adjacent_similarity"] for s, r in last.items()},
                      "peak_rss_mib": {s: round(r["peak_rss_mib"], 1) for s, r in last.items()},
                      "rss_before_stage_mib": {s: round(r["rss_before_stage_mib"], 1) for s, r in last.items()}},
                     indent=2))


if __name__ == "__main__":
    main()
