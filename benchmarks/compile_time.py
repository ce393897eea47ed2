"""CPU seconds numba spends compiling during a first `contextsort demo`, per checkout; JSON out.

    python benchmarks/compile_time.py --src /tmp/before/src --src src [--pairs 2]

Each measurement is a fresh process running the demo with an empty numba cache of its own
(NUMBA_CACHE_DIR in a new temporary directory) and the CLI's warm-up process off, so that the
demo compiles every kernel it reaches itself. A numba compile-event listener adds up the
*thread CPU time* of each top-level compilation (nested ones are inside it), which a shared
machine's load changes far less than wall time. Also printed: each contextsort function's own
compile CPU (its nested compilations of numba's library code included, those of other
contextsort functions not), largest first, and the demo's wall seconds. Checkouts are
alternated (A B A B ...); quote the ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, sys, time
from collections import defaultdict
from numba.core import event
own, child, stack, total = defaultdict(float), defaultdict(float), [], [0.0]
class Listener(event.Listener):
    def on_start(self, ev):
        f = ev.data["dispatcher"].py_func
        stack.append([f"{f.__module__}.{f.__qualname__}", time.thread_time(), 0.0])
    def on_end(self, ev):
        name, t0, nested = stack.pop()
        dt = time.thread_time() - t0
        if name.startswith("contextsort"):
            own[name] += dt - nested
            for outer in reversed(stack):
                if outer[0].startswith("contextsort"):
                    outer[2] += dt
                    break
        if not stack:
            total[0] += dt
event.register("numba:compile", Listener())
t = time.perf_counter()
from contextsort.cli import main
main(["demo", "-q", "-o", sys.argv[1]])
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "compile_cpu": total[0], "functions": len(own),
                  "own": sorted(((round(v, 3), k) for k, v in own.items()), reverse=True)}))
"""


def measure(src: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="compile-time-") as tmp:
        env = dict(os.environ, PYTHONPATH=str(src), NUMBA_CACHE_DIR=str(Path(tmp) / "numba"), CONTEXTSORT_WARMUP="0")
        out = subprocess.run([sys.executable, "-c", CHILD, str(Path(tmp) / "demo")], env=env, check=True,
                             capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", action="append", required=True, help="a checkout's src directory (repeat to compare)")
    ap.add_argument("--pairs", type=int, default=1, help="rounds of the alternation")
    ap.add_argument("--top", type=int, default=15, help="functions listed per checkout")
    a = ap.parse_args()
    srcs = [Path(s).resolve() for s in a.src]
    runs: dict[str, list[dict]] = {str(s): [] for s in srcs}
    for _ in range(a.pairs):
        for s in srcs:
            runs[str(s)].append(measure(s))
    result = {}
    for s, rs in runs.items():
        result[s] = {
            "compile_cpu_s": [round(r["compile_cpu"], 2) for r in rs],
            "compile_cpu_median_s": round(statistics.median(r["compile_cpu"] for r in rs), 2),
            "demo_wall_s": [round(r["wall"], 2) for r in rs],
            "functions_compiled": rs[-1]["functions"],
            "top_own_cpu_s": rs[-1]["own"][: a.top],
        }
    first = result[str(srcs[0])]["compile_cpu_median_s"]
    print(json.dumps({"benchmark": "compile_time", "cpus": os.cpu_count(), "pairs": a.pairs, "checkouts": result,
                      "ratio_to_first": {s: round(r["compile_cpu_median_s"] / first, 3) for s, r in result.items()}},
                     indent=1))


if __name__ == "__main__":
    main()
