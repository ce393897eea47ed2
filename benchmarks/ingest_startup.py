"""Seconds from process start to the end of the ingest stage of `contextsort run`, with and
without a thread that loads numba (its first call of the text-key kernel) from the start.

The ingest stage makes a run's first numba call, and numba's first call in a process loads
its registries (0.5-0.8 s here, most of it imports). Could a thread started at the top of
the process take that off the ingest stage's path? Each repeat runs both variants, in
alternating order, in fresh processes (`contextsort run` stopped right after ingest; no
warm-up process beside it: run the command once before, so numba's cache is warm).
Prints JSON: per variant the median seconds to the stage's start, of the stage, and to its end.

    PYTHONPATH=src python benchmarks/ingest_startup.py CORPUS.jsonl --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import os, sys, time
T0 = time.perf_counter()
if sys.argv[3] == "1":
    import threading

    def load():
        import numpy as np
        from contextsort.textkey import hash_utf8
        hash_utf8(b"a", np.array([0, 1]))

    threading.Thread(target=load, daemon=True).start()
from contextsort import cli
from contextsort.stages.ingest import IngestStage

stage_run = IngestStage.run

def timed(self, ctx):
    t = time.perf_counter()
    stage_run(self, ctx)
    t1 = time.perf_counter()
    print(f'{{"to_stage_start": {t - T0}, "stage": {t1 - t}, "to_stage_end": {t1 - T0}}}', flush=True)
    os._exit(0)  # the rest of the run is not measured

IngestStage.run = timed
cli.main(["run", "-q", sys.argv[1], "-o", sys.argv[2]])
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    times: dict[str, list[dict]] = {"plain": [], "numba_thread": []}
    env = {**os.environ, "CONTEXTSORT_WARMUP": "0"}  # no first-run compiler process beside the runs
    with tempfile.TemporaryDirectory(prefix="ingest-startup-") as tmp:
        for r in range(args.repeats):
            for warm in ((0, 1) if r % 2 == 0 else (1, 0)):
                out = subprocess.run([sys.executable, "-c", CHILD, args.corpus, f"{tmp}/run-{r}-{warm}", str(warm)],
                                     capture_output=True, text=True, check=True, env=env).stdout
                times["numba_thread" if warm else "plain"].append(json.loads(out.strip().splitlines()[-1]))
    print(json.dumps({name: {k: round(statistics.median(t[k] for t in ts), 3) for k in ts[0]} for name, ts in times.items()}
                     | {"repeats": args.repeats}, indent=1))


if __name__ == "__main__":
    main()
