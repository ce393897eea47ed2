"""Time the adjacent-similarity pass of the metrics stage on a finished run (prints JSON).

The walk order's consecutive cosines, read from the run's embeddings.npy: with this source
tree's `metrics.adjacent_similarities_along` (RowFile reads, round 4), or, run against an
older tree that lacks it, that tree's `adjacent_similarities_in_slabs` (slab pairs mapped
afresh, commit 0e35ee4). Peak RSS is the process's, so run one process per measurement:

    PYTHONPATH=src python benchmarks/adjacent_reads.py RUN_DIR
    git archive 0e35ee4 src | tar -x -C /tmp/slabs
    PYTHONPATH=/tmp/slabs/src python benchmarks/adjacent_reads.py RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from contextsort import metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    run = ap.parse_args().run
    order = np.load(run / "order.npy")
    t = time.perf_counter()
    if hasattr(metrics, "adjacent_similarities_along"):
        from contextsort.rowfile import RowFile

        method = "rowfile_take"
        sims = metrics.adjacent_similarities_along(RowFile(run / "embeddings.npy"), order)
    else:
        method = "slab_pair_maps"
        sims = metrics.adjacent_similarities_in_slabs(lambda: np.load(run / "embeddings.npy", mmap_mode="r"), order)
    seconds = time.perf_counter() - t
    print(json.dumps({"method": method, "documents": len(order), "seconds": round(seconds, 3),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                      "mean": float(sims.mean())}))


if __name__ == "__main__":
    main()
