"""Compare every ordering on the BBC sample and on synthetic clustered graphs; print JSON.

Per dataset and algorithm: median seconds of the ordering call (graph already built,
numba already compiled), path_weight (sum, mean per step, jumps), path_bound and the
ratio, adjacent_similarity and label_agreement (with a random order's figure beside it).
A summary (`vs_paper`) compares `improved`, its cheaper variant (start from the paper walk's
pieces, 1 candidate), `edge` and `release` with the paper's greedy walk against the target
(>= 1.05 x its path_weight at <= 3 x its time); `time_with_graph_x` adds the graph build.

Synthetic data: unit vectors in 32 dimensions drawn around N/200 cluster centres
(Pareto-sized clusters of varying spread), the centres themselves grouped into 20 topics;
label = topic. kNN (k = 10) by FAISS IVF-Flat whose coarse centroids are the true
cluster centres (nprobe 4), so generating 1M points takes seconds, not minutes.

    python benchmarks/orderings.py                       # BBC + 100k + 1M
    python benchmarks/orderings.py --sizes 100000 --no-bbc --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from contextsort.graph import graph_from_knn, restrict_knn  # noqa: E402
from contextsort.metrics import adjacent_similarity, label_agreement, path_bound, path_weight  # noqa: E402
from contextsort.order import compute_order, is_permutation_order  # noqa: E402

# "name:key=value,..." runs an order with options (here: improved's cheaper start)
ALL = ["paper", "release", "edge", "improved", "improved:start=paper,candidates=1", "random", "cluster", "knn"]


def parse_spec(spec: str) -> tuple[str, dict]:
    name, _, opts = spec.partition(":")
    kw = {}
    for part in filter(None, opts.split(",")):
        k, _, v = part.partition("=")
        kw[k] = int(v) if v.lstrip("-").isdigit() else v
    return name, kw


def synthetic(n: int, seed: int = 0, d: int = 32, topics: int = 20, per_cluster: int = 200, k: int = 10):
    """Clustered unit vectors, topic labels, and their kNN lists (self removed)."""
    import faiss

    rng = np.random.default_rng(seed)
    c = max(1, n // per_cluster)
    tc = rng.standard_normal((topics, d)).astype(np.float32)
    tc /= np.linalg.norm(tc, axis=1, keepdims=True)
    ctopic = rng.integers(0, topics, c)
    cc = tc[ctopic] + rng.standard_normal((c, d)).astype(np.float32) * 0.15
    cc /= np.linalg.norm(cc, axis=1, keepdims=True)
    size = rng.pareto(1.5, c) + 1
    assign = rng.choice(c, n, p=size / size.sum())
    spread = rng.uniform(0.08, 0.2, c).astype(np.float32)
    x = cc[assign] + rng.standard_normal((n, d)).astype(np.float32) * spread[assign, None]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = faiss.IndexFlatIP(d)
    q.add(cc)
    idx = faiss.IndexIVFFlat(q, d, c, faiss.METRIC_INNER_PRODUCT)
    idx.is_trained = True
    idx.add(x)
    idx.nprobe = 4
    sims, ids = idx.search(x, k + 1)
    # drop each point's self-match (usually column 0)
    self_hit = ids == np.arange(n)[:, None]
    key = np.where(self_hit, k + 1, np.arange(k + 1)[None, :])
    o = np.argsort(key, axis=1, kind="stable")[:, :k]
    ids = np.take_along_axis(ids, o, 1).astype(np.int64)
    sims = np.take_along_axis(sims, o, 1).astype(np.float32)
    sims[ids < 0] = 0
    return x, ctopic[assign], ids, sims


def bbc(run_dir: Path):
    """The BBC sample through the real pipeline, dense similarity (resumed if run_dir holds a run); kept docs only."""
    import contextsort
    from contextsort.corpus import DocStore
    from contextsort.sample import bbc_news_path

    cfg = contextsort.Config()
    cfg.similarity.similarity = "dense"  # the paper's signal (the default is now hybrid)
    contextsort.run([bbc_news_path()], run_dir, cfg)
    ids = np.load(run_dir / "knn_ids.npy")
    sims = np.load(run_dir / "knn_sims.npy")
    dup_of = np.load(run_dir / "dup_of.npy")
    valid = np.load(run_dir / "embed_valid.npy")
    keep = (dup_of < 0) & valid
    kept = np.flatnonzero(keep)
    k_ids, k_sims = restrict_knn(ids, sims, dup_of, keep)
    emb = np.load(run_dir / "embeddings.npy")[kept]
    labels = np.asarray([str(x) for x in DocStore(run_dir / "store").labels])[kept]
    return emb, labels, k_ids, k_sims


def warm_up() -> None:
    """Compile every numba kernel once so timings exclude JIT."""
    x, lab, ids, sims = synthetic(400, seed=1)
    g = graph_from_knn(ids, sims)
    for spec in ALL:
        name, opts = parse_spec(spec)
        compute_order(name, g, knn_ids=ids, emb=x, **opts)
    path_weight(g, np.arange(g.n))
    path_bound(g)


def measure(spec: str, emb, labels, ids, graph, bound: float, times: list[float], seed: int = 0) -> dict:
    """One timed run of `spec` (appended to `times`) and the quality of its order."""
    name, opts = parse_spec(spec)
    t = time.perf_counter()
    order = compute_order(name, graph, seed=seed, knn_ids=ids, emb=emb, **opts)
    times.append(time.perf_counter() - t)
    pw = path_weight(graph, order)
    out = {
        "path_weight": pw["sum"],
        "path_weight_mean": pw["mean"],
        "jumps": pw["jumps"],
        "path_bound": bound,
        "ratio": pw["sum"] / bound if bound else 0.0,
        "adjacent_similarity": adjacent_similarity(emb, order),
    }
    if labels is not None:
        la = label_agreement(labels, order, seed=seed, random_trials=1)
        out["label_agreement"] = la["ordered"]
        out["label_agreement_random"] = la["random"]
    if not is_permutation_order(name):
        counts = np.bincount(order, minlength=graph.n)
        out["rows"] = int(len(order))
        out["appearances"] = {"min": int(counts.min()), "mean": float(counts.mean()), "max": int(counts.max())}
        out["note"] = "not a permutation: documents repeat; path_weight/ratio count every consecutive pair"
    return out


def run_dataset(label: str, emb, labels, ids, sims, orders, repeats: int) -> dict:
    t = time.perf_counter()
    g = graph_from_knn(ids, sims)
    res = {"n": int(g.n), "edges": int(g.n_edges), "graph_seconds": round(time.perf_counter() - t, 3)}
    bound = path_bound(g)
    algos: dict[str, dict] = {}
    times: dict[str, list[float]] = {name: [] for name in orders}
    # round-robin repeats, so load changes on a shared machine hit every algorithm alike
    for r in range(repeats):
        for name in orders:
            if r > 0 and times[name][0] > 20:
                continue  # slow ones (k-means at 1M) are timed once
            algos[name] = measure(name, emb, labels, ids, g, bound, times[name])
    for name in orders:
        algos[name] = {"seconds": float(np.median(times[name])), "seconds_all": [round(t, 4) for t in times[name]], **algos[name]}
        print(f"[{label}] {name}: {algos[name]['seconds']:.4f}s ratio {algos[name]['ratio']:.4f}", file=sys.stderr)
    res["algorithms"] = algos
    if "paper" in algos:
        p = algos["paper"]
        gs = res["graph_seconds"]
        res["vs_paper"] = {
            name: {
                "path_weight_x": a["path_weight"] / p["path_weight"] if p["path_weight"] else None,
                "time_x": a["seconds"] / p["seconds"] if p["seconds"] else None,
                # the same with the graph build both need (the runner's order stage)
                "time_with_graph_x": (gs + a["seconds"]) / (gs + p["seconds"]),
                "meets_target": bool(
                    p["path_weight"] and a["path_weight"] >= 1.05 * p["path_weight"] and a["seconds"] <= 3 * p["seconds"]
                ),
            }
            for name, a in algos.items()
            if name.split(":")[0] in ("edge", "improved", "release")
        }
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="synthetic sizes (comma-separated; empty for none)")
    ap.add_argument("--orders", default=";".join(ALL), help="semicolon-separated order specs (default: all)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-bbc", action="store_true")
    ap.add_argument("--bbc-dir", default=os.path.join(tempfile.gettempdir(), "contextsort-bench-orderings-bbc"))
    a = ap.parse_args(argv)
    orders = [o for o in a.orders.split(";") if o]
    warm_up()
    out = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()}, "datasets": {}}
    if not a.no_bbc:
        emb, labels, ids, sims = bbc(Path(a.bbc_dir))
        # sub-millisecond timings: more repeats so one descheduling does not decide the median
        out["datasets"]["bbc"] = run_dataset("bbc", emb, labels, ids, sims, orders, 3 * a.repeats)
    for n in [int(s) for s in a.sizes.split(",") if s]:
        t = time.perf_counter()
        emb, labels, ids, sims = synthetic(n)
        gen = time.perf_counter() - t
        d = run_dataset(f"synthetic-{n}", emb, labels, ids, sims, orders, a.repeats)
        d["generate_seconds"] = round(gen, 3)
        out["datasets"][f"synthetic_{n}"] = d
        del emb, labels, ids, sims
    out["machine"]["load_avg_end"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
