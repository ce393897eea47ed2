"""Peak memory of the report stage alone, on a finished run directory (prints JSON).

Calls `write_report(RUN_DIR, out=...)` in this process, as the report stage does, with a
sampler thread noting the anonymous / file-backed split of the resident set at its highest
sample (/proc/self/status RssAnon / RssFile); the page is written to --out, not into the run.
Run it once on each source tree to compare (`PYTHONPATH=... python benchmarks/report_memory.py`).

    PYTHONPATH=src python benchmarks/report_memory.py /work/cache/mem4/run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lexical_memory import Sampler, vm_kb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a finished run directory")
    ap.add_argument("--out", default="/tmp/report_memory.html")
    a = ap.parse_args()

    import numpy as np  # noqa: F401  (imported before the baseline, as in a run)
    import contextsort.report as report

    report.load_matplotlib()  # the libraries a run has loaded by then are in the baseline
    base = vm_kb("VmRSS")
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    path = report.write_report(a.run, out=a.out)
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    peak = vm_kb("VmHWM")
    print(json.dumps({
        "run": a.run, "baseline_rss_mb": round(base / 1024, 1), "peak_rss_mb": round(peak / 1024, 1),
        "added_mb": round((peak - base) / 1024, 1),
        "at_highest_sample_mb": {key: round(v / 1024, 1) for key, v in sampler.top.items()},
        "seconds": round(seconds, 1), "html_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16],
    }, indent=1))


if __name__ == "__main__":
    main()
