"""Peak RSS and seconds of the dense kNN (knn_graph, index "ivffs") over an embeddings .npy,
read through a memory map ("map", as before) or with explicit reads ("rowfile"). One mode per
process (VmHWM is per process). Prints JSON; --save writes ids/sims to compare the modes.

    python benchmarks/knn_rss.py EMB.npy --mode map --rows 100000 --save /tmp/map.npz
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from contextsort.neighbors import knn_graph
from contextsort.rowfile import RowFile


def peak_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("embeddings")
    ap.add_argument("--mode", choices=["map", "rowfile"], required=True)
    ap.add_argument("--rows", type=int, default=None, help="use only the first ROWS rows")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--save", default=None, help="write ids and sims to this .npz")
    a = ap.parse_args()
    if a.mode == "map":
        emb = np.load(a.embeddings, mmap_mode="r")
        emb = emb[: a.rows] if a.rows else emb
    else:
        emb = RowFile(a.embeddings, rows=a.rows)
    base = peak_rss_mib()
    t = time.perf_counter()
    ids, sims, info = knn_graph(emb, k=a.k, index="ivffs")
    seconds = time.perf_counter() - t
    if a.save:
        np.savez(a.save, ids=ids, sims=sims)
    print(json.dumps({"mode": a.mode, "rows": int(emb.shape[0]), "k": a.k, "seconds": round(seconds, 1),
                      "peak_rss_mib_before": round(base), "peak_rss_mib": round(peak_rss_mib()), "params": info.params}))


if __name__ == "__main__":
    main()
