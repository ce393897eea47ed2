"""Scale benchmark (prints JSON): kNN + dedup + traversal on synthetic clustered embeddings.

Single machine, one size per fresh subprocess (so each size's peak memory is its own):
time and peak RSS per stage (VmHWM from /proc, reset between stages through
/proc/self/clear_refs), bytes per document, and quality (path_weight mean per step on
the kNN graph, label agreement with the synthetic cluster labels). Embeddings are
unit-norm float32 [N, dim] around `clusters` random centres, 1% planted near-duplicates,
written to a memory-mapped .npy under --work (not counted in the stages' memory).

Partitioned mode (--partitioned N): the same data through distributed.partitioned_stages,
in-process and on a local Ray with 1 and 2 workers; quality against single-machine.

    python benchmarks/scale.py --sizes 100000 1000000            # one size per subprocess
    python benchmarks/scale.py --sizes 10000000 --nprobe 2       # the 10M run (~2.6 GB of vectors at dim 64)
    python benchmarks/scale.py --sizes 0 --partitioned 100000 --ray-workers 1 2
    python benchmarks/scale.py --sizes 0 --from-run runs/demo --parts 2 4 8   # BBC: after `contextsort demo`
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS since the last reset) in MB, from /proc/self/status."""
    cur = peak = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


class Stage:
    """Times a block and records its peak RSS (MB) and the RSS it leaves behind."""

    def __init__(self, out: dict, name: str):
        self.out, self.name = out, name

    def __enter__(self):
        reset_peak()
        self.rss0 = rss_mb()[0]
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        secs = time.perf_counter() - self.t
        cur, peak = rss_mb()
        self.out[self.name] = {"seconds": round(secs, 2), "peak_rss_mb": round(peak, 1), "rss_before_mb": round(self.rss0, 1), "rss_after_mb": round(cur, 1)}


def make_data(path: Path, n: int, dim: int, clusters: int, seed: int = 0, chunk: int = 500_000) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic clustered unit vectors in a memory-mapped .npy, plus cluster labels (int32)."""
    lab_path = path.with_suffix(".labels.npy")
    if path.exists() and lab_path.exists():
        emb = np.load(path, mmap_mode="r")
        if emb.shape == (n, dim):
            return emb, np.load(lab_path)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    labels = rng.integers(0, clusters, n).astype(np.int32)
    tmp = path.with_name(path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        x = centres[labels[s:e]] + 0.8 * rng.standard_normal((e - s, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:e] = x
    # 1% near-duplicates of earlier documents, spread over the corpus
    n_dup = n // 100
    dst = np.sort(rng.choice(np.arange(1, n), n_dup, replace=False))
    src = (rng.random(n_dup) * dst).astype(np.int64)
    noise = 0.003 * rng.standard_normal((n_dup, dim), dtype=np.float32)
    x = out[src] + noise
    out[dst] = x / np.linalg.norm(x, axis=1, keepdims=True)
    labels[dst] = labels[src]
    out.flush()
    del out
    os.replace(tmp, path)
    np.save(lab_path, labels)
    return np.load(path, mmap_mode="r"), labels


def knn_recall(emb: np.ndarray, ids: np.ndarray, sample: int, seed: int = 0, chunk: int = 1_000_000) -> float | None:
    """Share of the true k nearest neighbours (exact, streamed over emb) found, for a seeded sample of queries."""
    n, k = ids.shape
    if sample <= 0 or k == 0:
        return None
    q_rows = np.sort(np.random.default_rng(seed).choice(n, min(sample, n), replace=False))
    q = np.asarray(emb[q_rows], dtype=np.float32)
    best_s = np.full((len(q_rows), k + 1), -np.inf, dtype=np.float32)
    best_i = np.full((len(q_rows), k + 1), -1, dtype=np.int64)
    for s in range(0, n, chunk):
        sc = q @ np.asarray(emb[s : s + chunk], dtype=np.float32).T
        sc[q_rows[:, None] - s == np.arange(sc.shape[1])[None, :]] = -np.inf  # not itself
        top = np.argpartition(-sc, k, axis=1)[:, : k + 1] if sc.shape[1] > k + 1 else np.argsort(-sc, axis=1)[:, : k + 1]
        cs = np.concatenate([best_s, np.take_along_axis(sc, top, 1)], 1)
        ci = np.concatenate([best_i, top + s], 1)
        o = np.argsort(-cs, axis=1)[:, : k + 1]
        best_s, best_i = np.take_along_axis(cs, o, 1), np.take_along_axis(ci, o, 1)
    truth = best_i[:, :k]
    found = ids[q_rows]
    hits = sum(len(np.intersect1d(truth[r], found[r])) for r in range(len(q_rows)))
    return round(hits / truth.size, 4)


def single(n: int, a) -> dict:
    from contextsort.dedup import find_duplicates
    from contextsort.graph import graph_from_knn, restrict_knn
    from contextsort.metrics import path_weight
    from contextsort.neighbors import knn_graph
    from contextsort.order import compute_order

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    stages: dict = {}
    with Stage(stages, "generate"):
        emb, labels = make_data(work / f"emb_{n}_{a.dim}.npy", n, a.dim, a.clusters)
    base = rss_mb()[0]
    with Stage(stages, "knn"):
        ids, sims, info = knn_graph(emb, k=a.k, index=a.index, nprobe=a.nprobe, nlist=a.nlist)
    recall = knn_recall(emb, ids, a.recall_sample)
    with Stage(stages, "dedup"):
        dup_of = find_duplicates(ids, sims, 0.97)
    with Stage(stages, "traversal"):
        keep = dup_of < 0
        k_ids, k_sims = restrict_knn(ids, sims, dup_of, keep)
        graph = graph_from_knn(k_ids, k_sims)
        del k_ids, k_sims
        local = compute_order("paper", graph)
    kept = np.flatnonzero(keep)
    order = kept[local]
    pw = path_weight(graph, local)
    lab = labels[order]
    res = {
        "mode": "single",
        "n": n,
        "dim": a.dim,
        "k": a.k,
        "index": info.index,
        "index_params": info.params,
        "recall_at_k": recall,
        "kept": int(keep.sum()),
        "duplicates": int((~keep).sum()),
        "planted_duplicates": n // 100,
        "is_permutation": bool(len(np.unique(order)) == len(kept)),
        "path_weight_mean": round(pw["mean"], 4),
        "jumps": pw["jumps"],
        "label_agreement": round(float(np.mean(lab[1:] == lab[:-1])), 4),
        "stages": stages,
        "seconds_knn_dedup_traversal": round(sum(stages[s]["seconds"] for s in ("knn", "dedup", "traversal")), 1),
        "peak_rss_mb": round(max(stages[s]["peak_rss_mb"] for s in ("knn", "dedup", "traversal")), 1),
        "rss_baseline_mb": round(base, 1),
    }
    res["peak_bytes_per_doc"] = round((res["peak_rss_mb"] - base) * 2**20 / n, 1)
    res["vectors_mb"] = round(n * a.dim * 4 / 2**20, 1)
    if a.save_order:
        np.save(work / f"order_{n}_{a.dim}.npy", order)
        np.save(work / f"knn_ids_{n}_{a.dim}.npy", ids)
        np.save(work / f"knn_sims_{n}_{a.dim}.npy", sims)
    return res


def partitioned(n: int, a) -> list[dict]:
    """Partitioned stages in-process (several partition counts / spills) and on Ray (1 vs 2 workers)."""
    from contextsort.dedup import find_duplicates
    from contextsort.distributed import PartitionParams, RaySession, local_mapper, partitioned_stages
    from contextsort.graph import graph_from_knn, restrict_knn
    from contextsort.metrics import adjacent_similarity, path_weight

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    emb, labels = make_data(work / f"emb_{n}_{a.dim}.npy", n, a.dim, a.clusters)
    ref_order_path = work / f"order_{n}_{a.dim}.npy"
    if not ref_order_path.exists():
        raise SystemExit(f"run the single-machine size first: --sizes {n} --save-order")
    ref_order = np.load(ref_order_path)
    g = graph_from_knn(np.load(work / f"knn_ids_{n}_{a.dim}.npy"), np.load(work / f"knn_sims_{n}_{a.dim}.npy"))
    emb_ram = np.ascontiguousarray(emb)

    def quality(order, ids=None, sims=None, dup_of=None):
        """path_weight on the reference (single-machine) graph, on the run's own graph, cosine of neighbours, labels."""
        lab = labels[order]
        q = {"path_weight_mean": round(path_weight(g, order)["mean"], 4)}
        if ids is not None:
            keep = dup_of < 0
            pos = np.full(n, -1, dtype=np.int64)
            pos[np.flatnonzero(keep)] = np.arange(int(keep.sum()))
            own = graph_from_knn(*restrict_knn(ids, sims, dup_of, keep))
            q["path_weight_mean_own_graph"] = round(path_weight(own, pos[order])["mean"], 4)
        q["adjacent_similarity"] = round(adjacent_similarity(emb_ram, order), 4)
        q["label_agreement"] = round(float(np.mean(lab[1:] == lab[:-1])), 4)
        return q

    ref_ids, ref_sims = np.load(work / f"knn_ids_{n}_{a.dim}.npy"), np.load(work / f"knn_sims_{n}_{a.dim}.npy")
    ref_dup = find_duplicates(ref_ids, ref_sims, 0.97)
    ref = quality(ref_order, ref_ids, ref_sims, ref_dup)
    out = [{"mode": "single (reference)", "n": n, **ref}]

    def row(mode, res, secs, **extra):
        q = quality(res.order, res.ids, res.sims, res.dup_of)
        return {
            "mode": mode, "n": n, **extra, "partitions": res.info["partitions"], "spill": res.info["spill"], "seconds": round(secs, 1),
            "kept": len(res.order), **q,
            "vs_single": {key: round(q[key] / ref[key], 4) for key in q},
            "partition_sizes": res.info["partition_sizes"],
        }

    for parts in a.parts:
        for spill in a.spills:
            p = PartitionParams(k=a.k, index=a.index, nprobe=a.nprobe, partitions=parts, spill=spill)
            t = time.perf_counter()
            res = partitioned_stages(emb, None, None, p, local_mapper)
            out.append(row("partitioned, in-process", res, time.perf_counter() - t))
            print(json.dumps(out[-1]), file=sys.stderr)
    for w in a.ray_workers:
        p = PartitionParams(k=a.k, index=a.index, nprobe=a.nprobe, partitions=a.ray_partitions, spill=a.ray_spill)
        t0 = time.perf_counter()
        with RaySession(num_cpus=w, quiet=True) as s:
            t_start = time.perf_counter() - t0
            t = time.perf_counter()
            res = partitioned_stages(emb, None, None, p, s.mapper(), workers=w)
            secs = time.perf_counter() - t
        out.append(row(f"ray local, {w} worker(s)", res, secs, ray_start_seconds=round(t_start, 1)))
        print(json.dumps(out[-1]), file=sys.stderr)
    return out


def from_run(run_dir: str, a) -> list[dict]:
    """Partitioned vs single-machine on a finished single-machine run (e.g. `contextsort demo`): same embeddings."""
    from contextsort.corpus import DocStore
    from contextsort.distributed import PartitionParams, partitioned_stages
    from contextsort.graph import graph_from_knn
    from contextsort.metrics import adjacent_similarity, label_agreement, path_weight

    d = Path(run_dir)
    emb = np.load(d / "embeddings.npy")
    valid = np.load(d / "embed_valid.npy")
    store = DocStore(d / "store")
    labels = store.labels
    g = graph_from_knn(np.load(d / "knn_ids.npy"), np.load(d / "knn_sims.npy"))
    ref_order = np.load(d / "order.npy")

    def quality(order):
        q = {"path_weight_mean": round(path_weight(g, order)["mean"], 4), "adjacent_similarity": round(adjacent_similarity(emb, order), 4)}
        if labels is not None:
            q["label_agreement"] = round(label_agreement(labels, order)["ordered"], 4)
        return q

    ref = quality(ref_order)
    out = [{"mode": "single", "run": str(d), "kept": len(ref_order), "duplicates": int((np.load(d / "dup_of.npy") >= 0).sum()), **ref}]
    for parts in a.parts:
        for spill in a.spills:
            p = PartitionParams(k=a.k, partitions=parts, spill=spill)
            t = time.perf_counter()
            res = partitioned_stages(emb, valid, store.text_hash, p)
            q = quality(res.order)
            out.append({"mode": "partitioned", "partitions": parts, "spill": spill, "seconds": round(time.perf_counter() - t, 2),
                        "kept": len(res.order), "duplicates": int((res.dup_of >= 0).sum()), **q,
                        "vs_single": {key: round(q[key] / ref[key], 4) for key in q}})
            print(json.dumps(out[-1]), file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="single-machine sizes, each in its own subprocess (0: none)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=200)
    ap.add_argument("--index", default="auto")
    ap.add_argument("--nprobe", type=int, default=None)
    ap.add_argument("--nlist", type=int, default=None)
    ap.add_argument("--recall-sample", type=int, default=500, help="queries checked against exact search")
    ap.add_argument("--work", default="/tmp/contextsort_scale")
    ap.add_argument("--save-order", action="store_true", help="keep order and kNN of each size (reference for --partitioned)")
    ap.add_argument("--partitioned", type=int, default=0, help="size for the partitioned / Ray comparison (0: skip)")
    ap.add_argument("--parts", type=int, nargs="*", default=[4, 16], help="partition counts tried in-process")
    ap.add_argument("--spills", type=int, nargs="*", default=[0, 2], help="spill values tried in-process")
    ap.add_argument("--ray-workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--ray-partitions", type=int, default=8)
    ap.add_argument("--ray-spill", type=int, default=2)
    ap.add_argument("--from-run", default=None, help="a single-machine run directory (e.g. of `contextsort demo`): partitioned vs single on its embeddings")
    ap.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(single(a.one, a)))
        return
    results = []
    for n in [s for s in a.sizes if s > 0]:
        cmd = [sys.executable, __file__, "--one", str(n), "--dim", str(a.dim), "--k", str(a.k), "--clusters", str(a.clusters),
               "--index", a.index, "--work", a.work, "--recall-sample", str(a.recall_sample)] + (["--nprobe", str(a.nprobe)] if a.nprobe else []) + (["--nlist", str(a.nlist)] if a.nlist else []) + (["--save-order"] if a.save_order or a.partitioned == n else [])
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            results.append({"mode": "single", "n": n, "error": p.stderr[-2000:]})
        else:
            results.append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    if a.partitioned:
        results.extend(partitioned(a.partitioned, a))
    if a.from_run:
        results.extend(from_run(a.from_run, a))
    print(json.dumps({"benchmark": "scale", "dim": a.dim, "k": a.k, "clusters": a.clusters, "cpus": os.cpu_count(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
