"""Replay the metrics stage of a finished run through `contextsort run`, sampling the RSS of
the run's process tree as benchmarks/memory.py does; JSON out.

    PYTHONPATH=src python benchmarks/metrics_replay.py RUN_DIR CORPUS

The metrics record is removed from RUN_DIR/manifest.json, so a resumed `contextsort run
CORPUS -o RUN_DIR` (default options) re-runs that stage alone when every other stage is
fresh: CORPUS must be the path the run was made from (the input fingerprint includes it).
The script stops if any other stage ran. It rewrites RUN_DIR's manifest.json and
metrics.json: use a copy (`cp -al RUN COPY`, then replace COPY/manifest.json and
COPY/metrics.json by real copies so the original's files are not shared). Printed: the peak
RSS of the run (only metrics ran), the stage's seconds, its bound.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--interval", type=float, default=0.5)
    a = ap.parse_args()
    manifest = a.run_dir / "manifest.json"
    m = json.loads(manifest.read_text())
    stages = [s for s in m["stages"] if s != "metrics"]
    m["stages"].pop("metrics", None)
    manifest.write_text(json.dumps(m, indent=2))
    res = memory.run_sampled(a.corpus, a.run_dir, a.interval, [])
    m = json.loads(manifest.read_text())
    ran = [s for s in stages if s not in (m.get("skipped") or [])]
    if ran:
        raise SystemExit(f"stages other than metrics ran ({', '.join(ran)}): the peak is not the metrics stage's")
    print(json.dumps({"peak_rss_mib": round(max(s[1] for s in res["samples"]) / 2**20, 1),
                      "wall_seconds": res["wall_seconds"], "metrics_seconds": m["stages"]["metrics"]["seconds"],
                      "bound": m["metrics"]["path_weight"]["bound"]}))


if __name__ == "__main__":
    main()
