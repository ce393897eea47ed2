"""Fixed costs of a default `contextsort run` (issue 16), for two or more checkouts, alternated; JSON out.

    python benchmarks/fixed_costs.py CORPUS --src /tmp/before/src --src src [--runs 3]

Each measurement is a fresh process, one at a time, checkouts alternated (A B A B ...) so that a
shared machine's load swings hit both alike. Per checkout and run:

  import    `python -c "import contextsort.cli"` minus `python -c pass` (own processes)
  wall      `contextsort run CORPUS -o DIR` (via `cli.main()` on the process's own argv, as the
            console script calls it), from spawning the process until it has exited
  startup   the time until `main` returns that no stage's `seconds` covers: interpreter start,
            imports, input fingerprints, model load, manifest writes, the printed summary
  exit      from `main` returning until the process has exited
  stages    each stage's `seconds` from the run's manifest.json (write, report, ...)

One unrecorded run per checkout comes first (it fills numba's cache of that source tree;
the CLI's background warm-up is off). Medians are reported. The outputs of the last run of each checkout are compared with the
first checkout's: ordered.jsonl, removed.jsonl and order.npy byte for byte, ordered.parquet
as tables read back with pyarrow. CORPUS: e.g. the one `benchmarks/throughput.py` builds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
out, times = sys.argv[1], sys.argv[2]
sys.argv = ["contextsort", "run", *sys.argv[3:], "-o", out]
from contextsort.cli import main
status = main()
with open(times, "w") as fh:
    json.dump({"main_returned": time.time()}, fh)
sys.exit(status)
"""


def spawn_seconds(code: str, env: dict) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def one_run(src: str, inputs: list[str], out: Path, extra: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "CONTEXTSORT_WARMUP": "0"}
    imp = spawn_seconds("import contextsort.cli", env) - spawn_seconds("pass", env)
    shutil.rmtree(out, ignore_errors=True)
    times = out.with_name(out.name + ".times.json")
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", CHILD, str(out), str(times), *inputs, *extra], env=env,
                       capture_output=True, text=True)
    t_end = time.time()
    if p.returncode != 0:
        raise SystemExit(f"{src}: {p.stderr[-3000:]}")
    returned = json.loads(times.read_text())["main_returned"]
    manifest = json.loads((out / "manifest.json").read_text())
    stages = {k: v["seconds"] for k, v in manifest["stages"].items()}
    return {"wall": t_end - t0, "import": imp, "startup": returned - t0 - sum(stages.values()),
            "exit": t_end - returned, "stages": stages}


def same_outputs(a: Path, b: Path) -> dict:
    import pyarrow.parquet as pq

    same = {f: (a / f).read_bytes() == (b / f).read_bytes() for f in ("ordered.jsonl", "removed.jsonl", "order.npy")}
    if (a / "ordered.parquet").exists():
        same["ordered.parquet (tables)"] = pq.read_table(a / "ordered.parquet").equals(pq.read_table(b / "ordered.parquet"))
    return same


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--src", action="append", required=True, help="a checkout's src/ directory (give two or more)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--option", action="append", default=[], help="an extra run option, e.g. --option=--k=20")
    a = ap.parse_args()
    got: dict[str, list[dict]] = {s: [] for s in a.src}
    with tempfile.TemporaryDirectory(prefix="fixed-costs-") as tmp:
        outs = {s: Path(tmp) / f"run{i}" for i, s in enumerate(a.src)}
        for s in a.src:
            one_run(s, a.inputs, outs[s], a.option)
        for _ in range(a.runs):
            for s in a.src:
                got[s].append(one_run(s, a.inputs, outs[s], a.option))
        identical = {s: same_outputs(outs[a.src[0]], outs[s]) for s in a.src[1:]}
    result = {}
    for s, runs in got.items():
        stage_names = list(runs[0]["stages"])
        result[s] = {
            "median": {k: median([r[k] for r in runs]) for k in ("wall", "import", "startup", "exit")}
            | {f"stage_{k}": median([r["stages"].get(k, 0.0) for r in runs]) for k in stage_names},
            "runs": [{k: round(v, 3) for k, v in r.items() if k != "stages"} for r in runs],
        }
    print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(), "runs": a.runs, "by_src": result,
                      "outputs_identical_to_first": identical}, indent=2))


if __name__ == "__main__":
    main()
