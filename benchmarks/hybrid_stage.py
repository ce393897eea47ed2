"""Hybrid neighbours against dense neighbours in whole default runs, two source trees
alternated (before, after, after, before, ...), each run a fresh `contextsort run` process
on the same corpus. Reads the neighbors stage's `dense_seconds` (dense IVF kNN) and
`similarity_seconds` (lexical vectors, lexical kNN, hybrid merge) from each manifest and
prints JSON: per-tree medians, the ratio hybrid / dense (target: <= 2, i.e. similarity <=
dense) and sha256 of the graph and the outputs, which must be the same for both trees.

    git archive main src | tar -x -C /tmp/before    # the tree to compare against
    PYTHONPATH=src python benchmarks/hybrid_stage.py /work/cache/tp/corpus.jsonl --before /tmp/before/src

The first run of each tree (numba compiles on a fresh tree) is not counted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

COMPARED = ("knn_ids.npy", "knn_sims.npy", "dedup_ids.npy", "order.npy", "ordered.jsonl")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def one_run(src: str, corpus: str, out: Path) -> dict:
    """A default run of the tree at `src` into `out`; the neighbors stage's figures and hashes."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": src}
    subprocess.run([sys.executable, "-m", "contextsort.cli", "run", "-q", corpus, "-o", str(out)],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    man = json.loads((out / "manifest.json").read_text())
    nb = man["stages"]["neighbors"]
    with open("/proc/loadavg") as fh:
        load = float(fh.read().split()[0])
    return {"dense_seconds": nb["dense_seconds"], "similarity_seconds": nb["similarity_seconds"],
            "stage_seconds": nb["seconds"], "ratio": round((nb["dense_seconds"] + nb["similarity_seconds"]) / nb["dense_seconds"], 3),
            "label_agreement": json.loads((out / "metrics.json").read_text()).get("label_agreement"),
            "load": load, "sha256": {f: sha256(out / f) for f in COMPARED}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("--before", required=True, help="src directory of the tree to compare against")
    ap.add_argument("--after", default=str(Path(__file__).resolve().parents[1] / "src"), help="src directory (default: this tree)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of (before, after, after, before)")
    ap.add_argument("--work", default=None, help="directory for the run directories (default: a temporary one)")
    args = ap.parse_args()
    trees = {"before": args.before, "after": args.after}
    work = Path(args.work or tempfile.mkdtemp(prefix="hybrid_stage-"))
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for name, src in trees.items():  # compile (not counted)
        one_run(src, args.corpus, work / f"warm-{name}")
    for _ in range(args.rounds):
        for name in ("before", "after", "after", "before"):
            runs[name].append(one_run(trees[name], args.corpus, work / name))
            print(name, json.dumps({k: v for k, v in runs[name][-1].items() if k != "sha256"}), file=sys.stderr)
    med = {name: {key: round(statistics.median(r[key] for r in rs), 3)
                  for key in ("dense_seconds", "similarity_seconds", "stage_seconds", "ratio")}
           for name, rs in runs.items()}
    hashes = {name: {json.dumps(r["sha256"], sort_keys=True) for r in rs} for name, rs in runs.items()}
    out = {
        "corpus": args.corpus,
        "runs_per_tree": len(runs["after"]),
        "median": med,
        "similarity_speedup": round(med["before"]["similarity_seconds"] / med["after"]["similarity_seconds"], 3),
        "loads": [r["load"] for rs in runs.values() for r in rs],
        "label_agreement": {name: rs[0]["label_agreement"] for name, rs in runs.items()},
        "outputs_identical": len(hashes["before"] | hashes["after"]) == 1,
        "sha256": runs["after"][0]["sha256"],
        "runs": runs,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
