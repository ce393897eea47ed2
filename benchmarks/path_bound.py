"""path_bound on real graphs, for two or more checkouts: the bound's value and seconds; JSON out.

    # 1. export the graphs once: the quality corpora (benchmarks/corpora.py) at today's default
    #    setting, walked by today's default order, and the traversal graphs of finished runs
    PYTHONPATH=src python benchmarks/path_bound.py export DIR [--corpora bbc,jargon] [--run NAME=RUN_DIR ...]
    # 2. the bound of every exported graph under each checkout (a fresh process per checkout)
    python benchmarks/path_bound.py compare DIR --src /tmp/before/src --src src

Each exported graph is the walk's graph (kNN lists of the kept documents, renumbered) and the
order walked on it, so that a checkout whose `path_bound` takes the order's weight as its
`target` is given it (as the metrics stage does). Seconds are those of one `path_bound` call
after the kernels are compiled; on a shared machine compare them only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CHILD = r"""
import inspect, json, sys, time
from pathlib import Path
import numpy as np
from contextsort.graph import graph_from_knn
from contextsort.metrics import path_bound, path_bound_two_best, path_edge_weights
takes_target = "target" in inspect.signature(path_bound).parameters
tiny = np.array([[1, 2], [0, 2], [0, 1]]), np.array([[0.9, 0.5], [0.9, 0.4], [0.5, 0.4]], np.float32)
path_bound(graph_from_knn(*tiny))
out = {}
for f in sorted(Path(sys.argv[1]).glob("*.npz")):
    z = np.load(f)
    g = graph_from_knn(z["ids"], z["sims"])
    walk = float(path_edge_weights(g, z["order"]).sum())
    t = time.perf_counter()
    bound = path_bound(g, target=walk) if takes_target else path_bound(g)
    seconds = time.perf_counter() - t
    out[f.stem] = {"documents": g.n, "edges": g.n_edges, "path_weight": walk, "bound": bound,
                   "two_best": path_bound_two_best(g), "seconds": round(seconds, 3)}
print(json.dumps(out))
"""


def export_corpora(out: Path, names: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import corpora as C
    import quality as Q
    from contextsort.dedup import DEFAULT_THRESHOLD
    from contextsort.order import compute_order

    sim, w, k, name, opts = Q.parse_setting(Q.DEFAULT)
    for corpus in names:
        p = Q.Prepared(corpus, C.load(corpus), "wordllama", k, DEFAULT_THRESHOLD)
        graph, k_ids = p.graph(sim, float(w), k)
        local = compute_order(name, graph, seed=0, knn_ids=k_ids, emb=p.emb[p.kept], **opts)
        ids, sims = knn_lists(graph)
        np.savez(out / f"{corpus}.npz", ids=ids, sims=sims, order=local)
        print(corpus, graph.n, graph.n_edges, file=sys.stderr)


def knn_lists(graph) -> tuple[np.ndarray, np.ndarray]:
    """The graph as padded neighbour lists (-1 = none): graph_from_knn gives the same graph back."""
    deg = np.diff(graph.indptr)
    ids = np.full((graph.n, max(1, int(deg.max(initial=0)))), -1, np.int64)
    sims = np.zeros(ids.shape, np.float32)
    rows = np.repeat(np.arange(graph.n), deg)
    cols = np.arange(len(graph.indices)) - np.repeat(graph.indptr[:-1], deg)
    ids[rows, cols] = graph.indices
    sims[rows, cols] = graph.weights
    return ids, sims


def export_run(out: Path, name: str, run_dir: Path) -> None:
    from types import SimpleNamespace

    from contextsort.config import Config
    from contextsort.pipeline import RunContext
    from contextsort.stages.order import kept_graph

    ctx = RunContext(SimpleNamespace(path=run_dir), Config(), None, [], json.loads((run_dir / "manifest.json").read_text()))
    kept, k_ids, k_sims = kept_graph(ctx)
    pos = np.full(len(np.load(run_dir / "dup_of.npy")), -1, np.int64)
    pos[kept] = np.arange(len(kept))
    np.savez(out / f"{name}.npz", ids=k_ids, sims=k_sims, order=pos[np.load(run_dir / "order.npy")])
    print(name, len(kept), file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export")
    ex.add_argument("dir", type=Path)
    ex.add_argument("--corpora", default="", help="comma-separated names from benchmarks/corpora.py")
    ex.add_argument("--run", action="append", default=[], help="NAME=RUN_DIR of a finished run")
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("dir", type=Path)
    cmp_.add_argument("--src", action="append", required=True)
    a = ap.parse_args()
    if a.cmd == "export":
        a.dir.mkdir(parents=True, exist_ok=True)
        export_corpora(a.dir, [c for c in a.corpora.split(",") if c])
        for spec in a.run:
            name, _, path = spec.partition("=")
            export_run(a.dir, name, Path(path))
        return
    res = {}
    for src in a.src:
        p = subprocess.run([sys.executable, "-c", CHILD, str(a.dir)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(Path(src).resolve())})
        if p.returncode != 0:
            raise SystemExit(f"{src}: {p.stderr[-3000:]}")
        res[src] = json.loads(p.stdout.strip().splitlines()[-1])
    first = a.src[0]
    table = {}
    for g, row in res[first].items():
        table[g] = {"documents": row["documents"], "edges": row["edges"], "path_weight": round(row["path_weight"], 3),
                    "two_best": round(row["two_best"], 3)}
        for src in a.src:
            table[g][f"bound {src}"] = round(res[src][g]["bound"], 3)
            table[g][f"seconds {src}"] = res[src][g]["seconds"]
        table[g]["new minus first"] = {s: round(res[s][g]["bound"] - row["bound"], 3) for s in a.src[1:]}
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
