"""End-to-end `contextsort demo` (BBC News sample): wall time and peak memory.

Runs the CLI in a fresh process --repeats times, each into a fresh run directory
(no resume), and prints JSON with the median wall time, peak RSS of the child,
per-stage seconds of the median run, and the quality figures it printed.

    python benchmarks/demo.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(out: Path) -> dict:
    env = {**os.environ}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    code = (
        "import resource, sys; from contextsort.cli import main; rc = main(sys.argv[1:]);"
        "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, "demo", "-o", str(out), "-q"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    peak = int(next(line.split()[1] for line in p.stdout.splitlines() if line.startswith("PEAK_RSS_KB")))
    manifest = json.loads((out / "manifest.json").read_text())
    return {"wall_s": wall, "peak_rss_mb": peak / 1024, "manifest": manifest}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(a.repeats):
            runs.append(one_run(Path(d) / f"run{i}"))
    runs.sort(key=lambda r: r["wall_s"])
    med = runs[len(runs) // 2]
    m = med["manifest"]
    print(
        json.dumps(
            {
                "benchmark": "demo",
                "repeats": a.repeats,
                "wall_s_median": round(statistics.median(r["wall_s"] for r in runs), 2),
                "wall_s_all": [round(r["wall_s"], 2) for r in runs],
                "peak_rss_mb_max": round(max(r["peak_rss_mb"] for r in runs), 1),
                "stage_seconds": {k: v["seconds"] for k, v in m["stages"].items()},
                "counts": m["counts"],
                "metrics": m["metrics"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
