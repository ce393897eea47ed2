"""kNN-graph benchmark (prints JSON): the index options side by side on the same vectors.

For each size and method: build seconds (k-means / train + add), search seconds (every
document as a query; for a method named in --sample-search only the recall queries are
searched and the full search time is extrapolated: seconds * N / queries, marked
"search_extrapolated"), their total, and recall@k.

recall@k: for Q queries drawn without replacement from the N documents (seeded, the same
rows for every method), the share of each query's exact k nearest other documents
(FAISS IndexFlatIP over all N, self excluded) that the method returns among its k, averaged
over the Q queries (ties at the k-th similarity may count as misses). recall_at_k_ties
counts a returned document as a hit when its exact similarity is at least the k-th true
neighbour's (less 1e-5): corpora with exact-duplicate vectors have many equally right answers.

Data: synthetic 'clustered' unit vectors (a two-level mixture: topics, clusters within
topics with spreads drawn per cluster, 1% near-duplicates; made to resemble the
similarity profile of wordllama embeddings), or a real .npy of unit vectors (--real),
optionally tiled to a larger N with small per-copy noise (--real-scale).

    python benchmarks/knn.py --sizes 300000 --methods ivf ivfgemm ivfsq8 hnsw nndescent
    python benchmarks/knn.py --sizes 1000000 --methods ivfgemm ivf --sample-search ivf
    python benchmarks/knn.py --real /tmp/knnw/bbc_paragraphs_wordllama.npy --methods ivf ivfgemm
    python benchmarks/knn.py --sizes 1000000 --queries 20000 --methods ivf ivffs --sample-search ivf ivffs --fs-grid 32,64 64,64
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import reset_peak, rss_mb  # noqa: E402  (the same /proc readings as the scale benchmark)


SPREAD = (1.0, 2.0)  # noise norm / centre norm, per cluster: neighbours often come from other clusters of the topic


def clustered(n: int, dim: int, seed: int = 0, per_cluster: int = 250, topics: int = 100, chunk: int = 200_000) -> np.ndarray:
    """Two-level mixture of unit vectors: about n/per_cluster clusters under `topics` topics.

    A cluster centre is cos ~0.7 to its topic; a document is cos ~0.45-0.7 to its cluster
    centre (spread drawn per cluster); 1% of documents are near-copies of earlier ones.
    """
    rng = np.random.default_rng(seed)
    n_clusters = max(1, n // per_cluster)
    topic_dirs = rng.standard_normal((topics, dim)).astype(np.float32)
    topic_dirs /= np.linalg.norm(topic_dirs, axis=1, keepdims=True)
    cent = topic_dirs[rng.integers(0, topics, n_clusters)] + rng.standard_normal((n_clusters, dim)).astype(np.float32) / math.sqrt(dim)
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    spread = np.exp(rng.uniform(np.log(SPREAD[0]), np.log(SPREAD[1]), n_clusters)).astype(np.float32)
    labels = rng.integers(0, n_clusters, n)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        lab = labels[s:e]
        x = cent[lab] + spread[lab, None] * rng.standard_normal((e - s, dim), dtype=np.float32) / np.float32(math.sqrt(dim))
        out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    n_dup = n // 100
    dst = np.sort(rng.choice(np.arange(1, n), n_dup, replace=False))
    src = (rng.random(n_dup) * dst).astype(np.int64)
    x = out[src] + 0.003 * rng.standard_normal((n_dup, dim), dtype=np.float32) / np.float32(math.sqrt(dim) / 16)
    out[dst] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def tiled(real: np.ndarray, n: int, noise: float, seed: int = 0) -> np.ndarray:
    """Real unit vectors repeated up to n rows, each copy after the first jittered (cosine ~1-noise^2/2)."""
    rng = np.random.default_rng(seed)
    reps = math.ceil(n / len(real))
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for r in range(reps):
        s, e = r * len(real), min(n, (r + 1) * len(real))
        x = real[: e - s].copy()
        if r:
            x += noise * rng.standard_normal(x.shape, dtype=np.float32) / np.float32(math.sqrt(real.shape[1]))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:e] = x
    return out


def exact_truth(emb: np.ndarray, q_rows: np.ndarray, k: int) -> tuple[np.ndarray, dict]:
    """Exact k nearest other documents of the query rows, and the data's similarity profile."""
    import faiss

    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    sims, ids = index.search(emb[q_rows], k + 1)
    del index
    out = np.empty((len(q_rows), k), dtype=np.int64)
    top = np.empty((len(q_rows), k), dtype=np.float32)
    for r, row in enumerate(ids):
        keep = row != q_rows[r]
        out[r] = row[keep][:k]
        top[r] = sims[r][keep][:k]
    rng = np.random.default_rng(1)
    pairs = rng.integers(0, len(emb), (10_000, 2))
    profile = {"top1_sim_mean": round(float(top[:, 0].mean()), 3), "topk_sim_mean": round(float(top[:, -1].mean()), 3),
               "random_pair_sim_median": round(float(np.median(np.einsum("ij,ij->i", emb[pairs[:, 0]], emb[pairs[:, 1]]))), 3)}
    return out, profile


def recall_ties(emb: np.ndarray, q_rows: np.ndarray, truth: np.ndarray, found: np.ndarray, eps: float = 1e-5) -> float:
    """recall@k counting a returned document as a hit when it is at least as similar as the
    k-th true neighbour (less eps): among exact duplicates any choice is right."""
    q = emb[q_rows]
    kth = np.einsum("qd,qd->q", q, emb[truth[:, -1]])
    got = np.einsum("qd,qkd->qk", q, emb[np.maximum(found, 0)])
    return round(float(((got >= kth[:, None] - eps) & (found >= 0)).mean()), 4)


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(t, f[f >= 0])) for t, f in zip(truth, found))
    return round(hits / truth.size, 4)


def drop_self(ids: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for r, row in enumerate(ids):
        row = row[row != rows[r]]
        out[r, : min(k, len(row))] = row[:k]
    return out


def run_faiss(kind: str, emb: np.ndarray, k: int, q_rows: np.ndarray, sample_only: bool, seed: int) -> tuple[dict, np.ndarray]:
    """Today's FAISS paths (ivf, hnsw: neighbors.build_index) and IVF-SQ8 (same nlist/nprobe as ivf)."""
    import faiss

    from contextsort.neighbors import build_index

    n, d = emb.shape
    t = time.perf_counter()
    if kind == "ivfsq8":
        nlist = max(1, min(65536, round(4 * math.sqrt(n)), n // 39 or 1))
        idx = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        idx.cp.seed = seed
        ntrain = min(n, 64 * nlist)
        rows = np.sort(np.random.default_rng(seed).choice(n, ntrain, replace=False))
        idx.train(emb[rows])
        idx.add(emb)
        idx.nprobe = min(nlist, max(16, min(64, nlist // 32)))
        params = {"nlist": nlist, "nprobe": idx.nprobe}
    else:
        idx, params = build_index(emb, kind, seed=seed)
    build = time.perf_counter() - t
    if kind == "ivffs":
        return run_fastscan(idx, params, emb, k, q_rows, sample_only, build)
    t = time.perf_counter()
    if sample_only:
        _, ids = idx.search(emb[q_rows], k + 1)
        search = (time.perf_counter() - t) * n / len(q_rows)
        found = drop_self(ids, q_rows, k)
    else:
        all_ids = np.empty((n, k), dtype=np.int64)
        for s in range(0, n, 16_384):
            _, ids = idx.search(emb[s : s + 16_384], k + 1)
            all_ids[s : s + 16_384] = drop_self(ids, np.arange(s, s + len(ids)), k)
        search = time.perf_counter() - t
        found = all_ids[q_rows]
    return {"build_seconds": round(build, 1), "search_seconds": round(search, 1), "search_extrapolated": sample_only, "params": params}, found


FS_GRID = [(None, None)]  # "ivffs": (nprobe, candidates) pairs searched on one build (--fs-grid)


def run_fastscan(idx, params: dict, emb: np.ndarray, k: int, q_rows: np.ndarray, sample_only: bool, build: float) -> list:
    """IVF-PQ fast scan + exact re-rank (neighbors' "ivffs"), one entry per FS_GRID pair, as knn_graph does it."""
    from contextsort.neighbors import FS_CANDIDATES, rerank_exact

    n = len(emb)
    out = []
    for nprobe, cand in FS_GRID:
        idx.nprobe = nprobe or params["nprobe"]
        cand = cand or FS_CANDIDATES
        rows = q_rows if sample_only else np.arange(n)
        found = np.empty((len(rows), k), dtype=np.int64)
        t = time.perf_counter()
        for s in range(0, len(rows), 16_384):
            q = np.ascontiguousarray(emb[rows[s : s + 16_384]])
            _, c = idx.search(q, cand)
            _, ids = rerank_exact(emb, q, c, k + 1)
            found[s : s + len(q)] = drop_self(ids, rows[s : s + len(q)], k)
        search = (time.perf_counter() - t) * (n / len(rows))
        res = {"build_seconds": round(build, 1), "search_seconds": round(search, 1), "search_extrapolated": sample_only,
               "params": {**params, "nprobe": idx.nprobe, "rerank": cand}}
        name = "ivffs" if len(FS_GRID) == 1 else f"ivffs:nprobe={idx.nprobe},cand={cand}"
        out.append((name, res, found if sample_only else found[q_rows]))
    return out


def run_method(method: str, emb: np.ndarray, k: int, q_rows: np.ndarray, sample_only: bool, seed: int, nprobe: int | None, nlist: int | None) -> tuple[dict, np.ndarray]:
    if method == "ivfgemm":
        from contextsort.neighbors import knn_graph

        t = time.perf_counter()
        ids, _, info = knn_graph(emb, k=k, index="ivfgemm", seed=seed, nprobe=nprobe, nlist=nlist)
        total = time.perf_counter() - t
        return {"build_seconds": None, "search_seconds": None, "total_seconds": round(total, 1), "params": info.params}, ids[q_rows]
    if method == "nndescent":
        from pynndescent import NNDescent

        t = time.perf_counter()
        nnd = NNDescent(emb, metric="dot", n_neighbors=k + 1, random_state=seed, n_jobs=1, compressed=True)
        ids, _ = nnd.neighbor_graph
        total = time.perf_counter() - t
        return {"build_seconds": None, "search_seconds": None, "total_seconds": round(total, 1), "params": {"n_neighbors": k + 1}}, drop_self(ids[q_rows], q_rows, k)
    got = run_faiss(method, emb, k, q_rows, sample_only, seed)
    for _, res, _ in (got if isinstance(got, list) else [(None, *got)]):
        res["total_seconds"] = round(res["build_seconds"] + res["search_seconds"], 1)
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[300_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--methods", nargs="*", default=["ivf", "ivfgemm"], help="ivf ivffs ivfgemm ivfsq8 hnsw nndescent")
    ap.add_argument("--sample-search", nargs="*", default=[], help="methods whose search runs on the recall queries only (time extrapolated)")
    ap.add_argument("--queries", type=int, default=50_000, help="recall@k queries (capped at N)")
    ap.add_argument("--nprobe", type=int, nargs="*", default=[None], help="ivfgemm only: lists joined with each list (several values: one entry each)")
    ap.add_argument("--nlist", type=int, default=None, help="ivfgemm only")
    ap.add_argument("--real", default=None, help=".npy of real unit vectors instead of the synthetic mixture")
    ap.add_argument("--real-rows", type=int, default=0, help="use only the first this many rows of --real")
    ap.add_argument("--real-scale", type=int, default=0, help="tile the real vectors to this many rows (jittered copies)")
    ap.add_argument("--real-noise", type=float, default=0.5, help="per-copy noise norm for --real-scale")
    ap.add_argument("--fs-grid", nargs="*", default=[], help="ivffs: NPROBE,CANDIDATES pairs searched on one build")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    if a.fs_grid:
        FS_GRID[:] = [tuple(int(v) for v in g.split(",")) for g in a.fs_grid]
    import faiss
    from contextsort.neighbors import knn_graph

    knn_graph(np.eye(4, 8, dtype=np.float32)[:4] + 0.1, k=2, index="ivfgemm")  # compile (numba cache) outside the timings
    from contextsort.neighbors import rerank_exact

    rerank_exact(np.eye(4, 8, dtype=np.float32), np.eye(4, 8, dtype=np.float32), np.zeros((4, 3), dtype=np.int64), 2)
    results = []
    sizes = [0] if a.real and not a.real_scale else a.sizes
    for n in sizes:
        if a.real:
            real = np.load(a.real, mmap_mode="r")
            real = np.array(real[: a.real_rows] if a.real_rows else real, dtype=np.float32)
            emb = tiled(real, a.real_scale, a.real_noise) if a.real_scale else real
            data = f"real:{Path(a.real).name}" + (f" tiled to {a.real_scale}, noise {a.real_noise}" if a.real_scale else "")
        else:
            emb = clustered(n, a.dim)
            data = "synthetic clustered"
        n = len(emb)
        q_rows = np.sort(np.random.default_rng(0).choice(n, min(a.queries, n), replace=False))
        t = time.perf_counter()
        truth, profile = exact_truth(emb, q_rows, a.k)
        exact_s = time.perf_counter() - t
        row = {"n": n, "dim": emb.shape[1], "data": data, "similarity_profile": profile, "queries": len(q_rows), "vectors_mb": round(emb.nbytes / 2**20, 1), "exact_seconds_for_queries": round(exact_s, 1), "methods": {}}
        runs = [(m, p) for m in a.methods for p in (a.nprobe if m == "ivfgemm" else [None])]
        for m, p in runs:
            reset_peak()
            before = rss_mb()[0]
            got = run_method(m, emb, a.k, q_rows, m in a.sample_search, a.seed, p, a.nlist)
            name = m if p is None or len(a.nprobe) == 1 else f"{m}:nprobe={p}"
            for name, res, found in (got if isinstance(got, list) else [(name, *got)]):
                res["peak_rss_above_start_mb"] = round(rss_mb()[1] - before, 1)
                res["recall_at_k"] = recall(truth, found)
                res["recall_at_k_ties"] = recall_ties(emb, q_rows, truth, found)
                row["methods"][name] = res
                print(json.dumps({"n": n, name: res}), file=sys.stderr)
        base = row["methods"].get("ivf")
        if base:
            row["speedup_vs_ivf"] = {m: round(base["total_seconds"] / r["total_seconds"], 2) for m, r in row["methods"].items() if r["total_seconds"]}
        results.append(row)
        del emb
    print(json.dumps({"benchmark": "knn", "k": a.k, "cpus": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
