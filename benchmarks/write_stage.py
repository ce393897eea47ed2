"""Seconds of the write stage's work on a finished run, for two or more checkouts, alternated; JSON out.

    python benchmarks/write_stage.py RUN_DIR --src /tmp/before/src --src src [--pairs 5] [--pandas-first]

Each timing is a fresh process that writes ordered.jsonl, ordered.parquet (`write_ordered`)
and removed.jsonl (`write_removed`) of RUN_DIR into a temporary folder. contextsort and
pyarrow (with pyarrow.json) are imported and a numba function run before timing (a run has
done so by then); what the write itself
imports (pyarrow.parquet, and pandas through pyarrow's Python converter) is timed. `--pandas-first` imports pandas before timing, as a run whose ingest already
imported it. Checkouts are alternated (A B A B ...); quote the ratio of medians. The files of
each checkout are compared with the first's (JSONL byte for byte, Parquet as tables).
RUN_DIR: any finished default run (label field "label", id field "id").
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
run, out, pandas_first = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if pandas_first:
    import pandas
from pathlib import Path
import numpy as np
import pyarrow, pyarrow.json, numba
numba.njit(lambda x: x + 1)(1)  # a run has dispatched numba kernels (ingest) before its write stage
from contextsort.corpus import DocStore
from contextsort.formats import write_ordered
from contextsort.formats.removed import write_removed
run, out = Path(run), Path(out)
t = time.perf_counter()
write_ordered(out, DocStore(run / "store"), np.load(run / "order.npy"), ["jsonl", "parquet"], "label")
write_removed(out / "removed.jsonl", run / "store", "id", np.load(run / "dup_of.npy"), np.load(run / "embed_valid.npy"),
              np.load(run / "dedup_ids.npy", mmap_mode="r"), np.load(run / "dedup_sims.npy", mmap_mode="r"),
              run / "rejects.jsonl")
print(json.dumps({"seconds": time.perf_counter() - t, "pandas_imported": "pandas" in sys.modules}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--src", action="append", required=True, help="a checkout's src/ directory (give two or more)")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--pandas-first", action="store_true", help="import pandas before timing")
    a = ap.parse_args()
    seconds: dict[str, list[float]] = {s: [] for s in a.src}
    pandas: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {s: Path(tmp) / f"out{i}" for i, s in enumerate(a.src)}
        for _ in range(a.pairs):
            for s in a.src:
                outs[s].mkdir(exist_ok=True)
                p = subprocess.run([sys.executable, "-c", CHILD, a.run_dir, str(outs[s]), "1" if a.pandas_first else "0"],
                                   capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(s).resolve())})
                if p.returncode != 0:
                    raise SystemExit(f"{s}: {p.stderr[-2000:]}")
                got = json.loads(p.stdout.strip().splitlines()[-1])
                seconds[s].append(round(got["seconds"], 3))
                pandas[s] = got["pandas_imported"]
        import pyarrow.parquet as pq

        first = outs[a.src[0]]
        same = {s: {"ordered.jsonl": (first / "ordered.jsonl").read_bytes() == (outs[s] / "ordered.jsonl").read_bytes(),
                    "removed.jsonl": (first / "removed.jsonl").read_bytes() == (outs[s] / "removed.jsonl").read_bytes(),
                    "ordered.parquet (tables)": pq.read_table(first / "ordered.parquet").equals(
                        pq.read_table(outs[s] / "ordered.parquet"))} for s in a.src[1:]}
    med = {s: sorted(v)[len(v) // 2] for s, v in seconds.items()}
    print(json.dumps({"pandas_first": a.pandas_first, "seconds": seconds, "median": med, "pandas_imported": pandas,
                      "median_vs_first": {s: round(m / med[a.src[0]], 3) for s, m in med.items()},
                      "outputs_identical_to_first": same}, indent=2))


if __name__ == "__main__":
    main()
