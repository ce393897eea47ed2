"""First-run benchmark (prints JSON): `contextsort demo` with numba's cache cold vs warm.

Each measurement is a fresh subprocess running the source tree this script belongs to
(PYTHONPATH=<repo>/src), wall-clock seconds of the whole command. Scenarios, in order:

  cold        numba cache of this source tree deleted (*.nbi, *.nbc, the warm-up marker),
              the CLI's warm-up process off (CONTEXTSORT_WARMUP=0)
  warm        the same command again (cache filled by `cold`)
  background  cache deleted; the CLI as shipped: it starts its warm-up process
              (`python -m contextsort.warmup --late`) beside the demo
  background_again  the same again (cache filled)
  preinstall  cache deleted; `python -m contextsort.warmup` (timed separately: a post-install
              step), then the demo

    python benchmarks/first_run.py                 # all scenarios
    python benchmarks/first_run.py --repeat 2      # each scenario twice (median reported)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def clear_cache() -> int:
    """Delete numba cache files and the warm-up marker of this source tree; return how many."""
    n = 0
    for pattern in ("*.nbi", "*.nbc", "contextsort-warm-*"):
        for p in (SRC / "contextsort").rglob(pattern):
            if p.parent.name == "__pycache__":
                p.unlink()
                n += 1
    return n


def timed(code: str, out: Path, warmup: bool = False) -> float:
    """Seconds of one fresh subprocess, in a fresh directory (a run directory left by an
    earlier scenario would be resumed, skipping every stage). `warmup`: let the CLI start its
    background warm-up process (CONTEXTSORT_WARMUP=1); the time stops when the demo ends, and
    the next scenario waits until the warm-up process has exited."""
    env = dict(os.environ, PYTHONPATH=str(SRC), CONTEXTSORT_WARMUP="1" if warmup else "0")
    env.pop("NUMBA_CACHE_DIR", None)
    cwd = Path(tempfile.mkdtemp(dir=out))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    secs = time.perf_counter() - t
    while subprocess.run(["pgrep", "-f", "contextsort.warmup --late"], stdout=subprocess.DEVNULL).returncode == 0:
        time.sleep(0.5)
    return secs


def demo_code() -> str:
    return "import sys; from contextsort.cli import main; sys.exit(main(['demo', '-q', '--overwrite', '-o', 'demo']))"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--scenarios", nargs="*", default=["cold", "background", "preinstall"], help="cold (+warm), background (+background_again), preinstall")
    a = ap.parse_args()
    res: dict[str, list[float]] = {"cold": [], "warm": [], "background": [], "background_again": [], "preinstall_warmup": [], "preinstall": [], "cold_cleared_files": [], "background_cleared_files": []}
    with tempfile.TemporaryDirectory(prefix="contextsort-first-run-") as tmp:
        out = Path(tmp)
        for _ in range(a.repeat):
            if "background" in a.scenarios:
                res["background_cleared_files"].append(clear_cache())
                res["background"].append(timed(demo_code(), out, warmup=True))
                res["background_again"].append(timed(demo_code(), out, warmup=True))
            if "cold" in a.scenarios:
                res["cold_cleared_files"].append(clear_cache())
                res["cold"].append(timed(demo_code(), out))
                res["warm"].append(timed(demo_code(), out))
            if "preinstall" in a.scenarios:
                clear_cache()
                res["preinstall_warmup"].append(timed("from contextsort.warmup import compile_hot_loops; compile_hot_loops()", out))
                res["preinstall"].append(timed(demo_code(), out))
    res = {k: v for k, v in res.items() if v}
    med = {k: round(statistics.median(v), 2) for k, v in res.items()}
    print(json.dumps({
        "benchmark": "first_run", "cpus": os.cpu_count(), "repeat": a.repeat, "seconds_median": med,
        "seconds_all": {k: [round(x, 2) for x in v] for k, v in res.items()},
        **{f"{s}_over_warm": round(med[s] / med["warm"], 2) for s in ("cold", "background", "preinstall") if s in med and "warm" in med},
    }, indent=1))


if __name__ == "__main__":
    main()
