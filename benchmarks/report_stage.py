"""Seconds of the report stage of a real run, for two or more checkouts, alternated; JSON out.

    python benchmarks/report_stage.py RUN_DIR --src /tmp/before/src --src src [--pairs 3]

Each timing is a fresh process that first loads numba's kernels (as the stages before the
report did in a run) and then times `write_report(RUN_DIR)` with its matplotlib import, as
the report stage pays it. Checkouts are alternated (A B A B ...) so that a shared machine's
load swings hit both alike; quote the ratio of medians. RUN_DIR: any finished run, e.g. the
one `benchmarks/throughput.py --cli --work DIR` leaves in DIR/run.
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
import json, sys, time
import numpy as np
from contextsort.graph import graph_from_knn
from contextsort.metrics import adjacent_similarities, path_bound, path_edge_weights
run, out = sys.argv[1], sys.argv[2]
x = np.random.rand(50, 8).astype(np.float32)
adjacent_similarities(x, np.arange(50))
g = graph_from_knn(np.load(run + "/knn_ids.npy")[:100] % 100, np.load(run + "/knn_sims.npy")[:100])
path_edge_weights(g, np.arange(100)); path_bound(g)
t = time.perf_counter()
from contextsort.report import write_report
write_report(run, out)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir")
    ap.add_argument("--src", action="append", required=True, help="a checkout's src/ directory (give two or more)")
    ap.add_argument("--pairs", type=int, default=3)
    a = ap.parse_args()
    seconds: dict[str, list[float]] = {s: [] for s in a.src}
    size: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.pairs):
            for i, src in enumerate(a.src):
                out = Path(tmp) / f"report{i}.html"
                p = subprocess.run([sys.executable, "-c", CHILD, a.run_dir, str(out)], capture_output=True, text=True,
                                   env={**os.environ, "PYTHONPATH": str(Path(src).resolve())})
                if p.returncode != 0:
                    raise SystemExit(f"{src}: {p.stderr[-2000:]}")
                seconds[src].append(round(json.loads(p.stdout.strip().splitlines()[-1])["seconds"], 3))
                size[src] = out.stat().st_size
    med = {s: sorted(v)[len(v) // 2] for s, v in seconds.items()}
    first = a.src[0]
    print(json.dumps({"seconds": seconds, "median": med, "html_bytes": size,
                      "median_vs_first": {s: round(m / med[first], 3) for s, m in med.items()}}, indent=2))


if __name__ == "__main__":
    main()
