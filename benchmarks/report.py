"""Time and size of the HTML report of a large run, JSON out.

    python benchmarks/report.py [--docs 100000] [--dim 256] [--dtype float32] [--runs 3] [--keep DIR]

Builds a synthetic run directory of `--docs` documents in seconds by writing the artifacts
directly (no embedding model, no kNN search): clustered unit embeddings, kNN lists drawn
inside each cluster with their true cosines, 1% planted duplicates, 0.2% rejects, labels,
the paper's order (contextsort's own traversal on that graph) and a packed index (the
real plan at L = 2048). Then builds the report `--runs` times and prints the median build
seconds (wall-clock and CPU: other processes on the same cores slow the first), the HTML
size and the sections it holds. Target: a 100k-document report builds
in seconds and stays under 5 MB at 1M documents (plots sample, tables show fixed rows).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from contextsort.config import Config  # noqa: E402
from contextsort.corpus import DocStoreWriter, Record  # noqa: E402
from contextsort.graph import graph_from_knn, restrict_knn  # noqa: E402
from contextsort.order import compute_order  # noqa: E402
from contextsort.pack import context_docs, pack_stats, plan_concat, shuffle_permutation  # noqa: E402
from contextsort.report import write_report  # noqa: E402

CLUSTER = 100  # documents per synthetic topic cluster
K = 10
L = 2048


def make_run(out: Path, n: int, dim: int, dtype: str, seed: int = 0) -> dict:
    """Write the artifacts of an n-document run into `out`; return seconds per part."""
    t = {}
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n_clusters = -(-n // CLUSTER)
    cluster = np.arange(n) // CLUSTER
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    emb = centres[cluster] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    dups = rng.choice(np.flatnonzero(np.arange(n) % CLUSTER != 0), n // 100, replace=False)
    emb[dups] = emb[(dups // CLUSTER) * CLUSTER] + 0.02 * rng.standard_normal((len(dups), dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    np.save(out / "embeddings.npy", emb.astype(dtype))
    np.save(out / "embed_valid.npy", np.ones(n, dtype=bool))
    # kNN: K others of the same cluster, sorted by their true cosine
    offs = rng.integers(1, CLUSTER, size=(n, K))
    ids = (cluster[:, None] * CLUSTER + (np.arange(n)[:, None] % CLUSTER + offs) % CLUSTER)
    ids = np.where(ids < n, ids, ids - CLUSTER * (ids >= n)).astype(np.int64)
    sims = np.empty(ids.shape, dtype=np.float32)
    for a in range(0, n, 65_536):  # in chunks: emb[ids] of all documents would be n*K*dim floats
        sims[a:a + 65_536] = np.einsum("id,ikd->ik", emb[a:a + 65_536], emb[ids[a:a + 65_536]])
    o = np.argsort(-sims, axis=1)
    ids, sims = np.take_along_axis(ids, o, 1), np.take_along_axis(sims, o, 1)
    np.save(out / "knn_ids.npy", ids)
    np.save(out / "knn_sims.npy", sims)
    dup_of = np.full(n, -1, dtype=np.int64)
    dup_of[dups] = (dups // CLUSTER) * CLUSTER
    np.save(out / "dup_of.npy", dup_of)
    t["embeddings_knn"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    words = np.array([f"w{i}" for i in range(5000)])
    writer = DocStoreWriter(out / "store", "label", "id")
    for i in range(n):
        c = int(cluster[i])
        body = " ".join(words[(c * 37 + rng.integers(0, 200, 60)) % len(words)])
        text = f"Article {i} on topic {c % 20}: {body}"
        writer.add(Record("synthetic.jsonl", i + 1, f"doc-{i}", text, {"id": f"doc-{i}", "text": text, "label": f"topic-{c % 20}"}))
    writer.close()
    rejects = [{"id": f"bad-{j}", "reason": ["empty text", f"invalid UTF-8 at byte {j}", "field 'text' is not a string"][j % 3],
                "source": "synthetic.jsonl", "line": n + j + 1} for j in range(n // 500)]
    (out / "rejects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rejects))
    t["store"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    keep = dup_of < 0
    kept = np.flatnonzero(keep)
    k_ids, k_sims = restrict_knn(ids, sims, dup_of, keep)
    local = compute_order("paper", graph_from_knn(k_ids, k_sims))
    order = kept[local]
    np.save(out / "order.npy", order)
    t["order"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    seq_len = rng.integers(50, 900, size=len(order)).astype(np.int64)
    doc_start = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(seq_len, out=doc_start[1:])
    plan = plan_concat(int(doc_start[-1]), L)
    cd = context_docs(doc_start, plan)
    perm = shuffle_permutation(len(plan), seed)
    stats = pack_stats(plan, cd, seq_len, None, emb, order, perm, seed)
    cnt = np.diff(cd.ptr)[perm]
    ptr = np.zeros(len(perm) + 1, dtype=np.int64)
    np.cumsum(cnt, out=ptr[1:])
    take = np.repeat(cd.ptr[perm] - ptr[:-1], cnt) + np.arange(ptr[-1])
    (out / "packed" / "megatron").mkdir(parents=True, exist_ok=True)
    np.savez(out / "packed" / "megatron" / "contexts_00000.npz", length=plan.length[perm].astype(np.int32),
             context=perm, doc_offsets=cd.offset[take].astype(np.int32), doc_offsets_ptr=ptr, doc_positions=cd.doc[take])
    info = {"context_length": L, "mode": "concat", "shuffled": True,
            "counts": {k: stats[k] for k in ("contexts", "context_tokens", "padding_tokens", "dropped_tokens")},
            "metrics": {k: v for k, v in stats.items() if k not in ("contexts", "context_tokens", "padding_tokens", "dropped_tokens")},
            "files": {"megatron": ["megatron/contexts_00000.npz"]}}
    (out / "packed" / "pack.json").write_text(json.dumps(info))
    t["pack"] = time.perf_counter() - t0

    cfg = Config()
    cfg.pack.context_length = L
    read = n + len(rejects)
    manifest = {
        "contextsort": "benchmark", "inputs": ["synthetic.jsonl"], "config": cfg.to_dict(),
        "versions": {"numpy": np.__version__},
        "stages": {"ingest": {"seconds": 1.0, "records_read": read, "rejected": len(rejects)},
                   "order": {"seconds": t["order"], "algorithm": "paper"}},
        "counts": {"records_read": read, "kept": int(len(order)), "duplicates": int(len(dups)), "rejected": len(rejects),
                   "adds_up": len(order) + len(dups) + len(rejects) == read},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return {k: round(v, 2) for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", default=None, help="build the run directory here and keep it (default: a temporary one)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(a.keep) if a.keep else Path(tmp) / "run"
        make = make_run(run_dir, a.docs, a.dim, a.dtype)
        seconds, cpu = [], []
        for _ in range(a.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            path = write_report(run_dir)
            seconds.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        page = path.read_text(encoding="utf-8")
        print(json.dumps({
            "documents": a.docs, "dim": a.dim, "dtype": a.dtype,
            "build_seconds_median": round(float(np.median(seconds)), 2), "build_seconds": [round(s, 2) for s in seconds],
            "build_cpu_seconds_median": round(float(np.median(cpu)), 2),
            "html_bytes": path.stat().st_size, "html_mb": round(path.stat().st_size / 2**20, 3),
            "under_5mb": path.stat().st_size < 5 * 2**20,
            "sections": re.findall(r'<section id="([a-z]+)"', page),
            "make_run_seconds": make, "load_average": [round(x, 1) for x in os.getloadavg()], "cpus": os.cpu_count(),
        }, indent=2))


if __name__ == "__main__":
    main()
