"""Distributed runs on a real Ray cluster of separate nodes (`ray start`, 1 CPU each, 127.0.0.1). Prints JSON.

Run inside a loopback-only network namespace (Ray binds to the machine's address otherwise):

    unshare --net bash -c 'ip link set lo up && RAY_AUTH_MODE=disabled \\
        PYTHONPATH=src python benchmarks/distributed.py quality --jargon-dir /tmp/dist_jargon/usr/share/dictd'
    unshare --net bash -c 'ip link set lo up && RAY_AUTH_MODE=disabled \\
        PYTHONPATH=src python benchmarks/distributed.py scale --docs 100000 --nodes 1 2'

quality: default settings (hybrid similarity, automatic partitions) on BBC News (label
agreement) and the Jargon File (link rate: consecutive entries that cross-reference), the
local engine vs a 2-node cluster. Neither corpus was used to choose any setting here.

scale: synthetic topical text (seeded; --topics topics, labels = topic), the whole CLI run
on 1 and 2 nodes: per-stage seconds from the manifest, peak RSS per node (sum over each
node's `ray start` process tree, sampled every 0.5 s) and of the driver, and the speed-up.
All nodes share this machine's cores, so the speed-up is a lower bound of separate machines'.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def cli_run(inp: Path, out: Path, *extra: str, sampler_nodes=None, core: int | None = None) -> tuple[dict, dict]:
    """One `contextsort run` in a subprocess (on one CPU core when `core` is given: the head
    node's, as a driver on the head machine); (manifest, peak RSS in MB by node / driver)."""
    from contextsort.distributed.cluster import MemorySampler, pin_to

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "RAY_AUTH_MODE": "disabled"}
    p = subprocess.Popen([sys.executable, "-m", "contextsort.cli", "run", str(inp), "-o", str(out), "-q", *extra],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=None if core is None else pin_to(core))
    with MemorySampler(sampler_nodes or [], {"driver": p.pid}) as mem:
        log, _ = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"contextsort run failed ({p.returncode}): {log[-3000:]}")
    peaks = {k: round(v / 2**20, 1) for k, v in mem.peak.items()}
    return json.loads((out / "manifest.json").read_text()), peaks


def jargon_link_rate(run: Path, jargon) -> dict:
    from contextsort.corpus import DocStore

    store = DocStore(run / "store")
    pos = {h: i for i, h in enumerate(jargon.headwords)}
    order = np.load(run / "order.npy")
    entries = np.array([pos[store.record(int(i))["id"]] for i in order])
    rng = np.random.default_rng(0)
    return {"ordered": jargon.link_rate(entries), "random": jargon.link_rate(rng.permutation(entries))}


def quality(a) -> dict:
    from contextsort.distributed.cluster import LocalCluster
    from contextsort.sample import bbc_news_path
    from jargon import read_jargon, write_jsonl

    work = Path(tempfile.mkdtemp(prefix="dq", dir=a.work))
    jargon = read_jargon(Path(a.jargon_dir))
    corpora = {"bbc": bbc_news_path(), "jargon": write_jsonl(jargon, work / "jargon.jsonl")}
    out: dict = {"settings": "defaults (hybrid similarity, automatic partitions)", "nodes": 2}
    with LocalCluster(work / "ray", a.port) as cluster:
        cluster.add_worker()
        for name, path in corpora.items():
            row = {}
            for engine, extra in (("local", ()), ("ray", ("--engine", "ray", "--ray-address", cluster.address))):
                man, _ = cli_run(path, work / f"{name}-{engine}", *extra)
                st = man["stages"]["neighbors"]
                r = {"similarity": st["similarity"], "partitions": st.get("partitions", 1),
                     "node_ids": len(st["node_ids"]), "counts_add_up": man["counts"]["adds_up"]}
                if name == "bbc":
                    r["label_agreement"] = man["metrics"]["label_agreement"]["ordered"]
                else:
                    r["link_rate"] = jargon_link_rate(work / f"{name}-{engine}", jargon)
                row[engine] = r
            key = "label_agreement" if name == "bbc" else "link_rate"
            val = (lambda r: r[key] if name == "bbc" else r[key]["ordered"])
            row["ray_over_local"] = round(val(row["ray"]) / val(row["local"]), 4)
            out[name] = row
    return out


def synthetic_corpus(path: Path, n: int, topics: int, seed: int = 0, words: int = 120) -> Path:
    """n documents of `words` words: 35% from the document's topic vocabulary (300 words per
    topic), the rest from a Zipfian shared vocabulary; label = topic. Seeded."""
    rng = np.random.default_rng(seed)
    chars = rng.integers(97, 123, size=(20_000 + 300 * topics, 9)).astype(np.uint8)
    lengths = rng.integers(3, 10, size=len(chars))
    vocab = np.array([bytes(c[:m]).decode() for c, m in zip(chars, lengths)])
    cdf = np.cumsum(1.0 / np.arange(1, 20_001))
    cdf /= cdf[-1]
    k = int(words * 0.35)
    with open(path, "w") as fh:
        for start in range(0, n, 10_000):
            m = min(n, start + 10_000) - start
            t = rng.integers(topics, size=m)
            topical = 20_000 + 300 * t[:, None] + rng.integers(300, size=(m, k))
            common = np.minimum(np.searchsorted(cdf, rng.random((m, words - k))), 19_999)
            idx = np.concatenate([topical, common], axis=1)
            idx = np.take_along_axis(idx, np.argsort(rng.random(idx.shape), axis=1), axis=1)
            for i in range(m):
                fh.write(json.dumps({"id": start + i, "label": f"t{t[i]}", "text": " ".join(vocab[idx[i]])}) + "\n")
    return path


def run_dir_bytes(run: Path, docs: int) -> dict:
    """Bytes per input document of the run directory: arrays (*.npy) and the document store."""
    arrays = sum(f.stat().st_size for f in run.glob("*.npy"))
    store = sum(f.stat().st_size for f in (run / "store").glob("*"))
    return {"arrays": round(arrays / docs, 1), "store": round(store / docs, 1)}


def scale(a) -> dict:
    from contextsort.distributed.cluster import LocalCluster

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="ds"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    corpus = work / f"synthetic_{a.docs}_{a.words}.jsonl"  # kept in --work: made once, reused by later runs
    if not corpus.exists():
        synthetic_corpus(corpus, a.docs, a.topics, words=a.words)
    out: dict = {"docs": a.docs, "topics": a.topics, "words": a.words, "run_options": a.run_options,
                 "pinned_cores": a.pin_cores, "corpus_seconds": round(time.perf_counter() - t, 1),
                 "bytes_per_doc": round(corpus.stat().st_size / a.docs, 1),
                 "cpus_per_node": 1, "machine_cores": os.cpu_count(), "runs": {}}
    for nodes in a.nodes:
        with LocalCluster(work / f"ray{nodes}", a.port + nodes, pin_cores=a.pin_cores) as cluster:
            for _ in range(nodes - 1):
                cluster.add_worker()
            shutil.rmtree(work / f"run{nodes}", ignore_errors=True)  # a fresh run, never a resumed one
            t = time.perf_counter()
            man, peaks = cli_run(corpus, work / f"run{nodes}", "--engine", "ray", "--ray-address", cluster.address,
                                 *a.run_options.split(), sampler_nodes=cluster.nodes,
                                 core=0 if a.pin_cores else None)
        st = man["stages"]
        out["runs"][str(nodes)] = {
            "seconds_total": round(time.perf_counter() - t, 1),
            "stage_seconds": {k: v["seconds"] for k, v in st.items()},
            "stage_nodes": {k: len(v["node_ids"]) for k, v in st.items()},
            "partitions": st.get("partition", {}).get("partitions", 1),
            "searched_per_partition_max": st["neighbors"].get("searched_per_partition_max"),
            "tasks": {k: v.get("tasks", v.get("pieces")) for k, v in st.items() if v.get("tasks", v.get("pieces"))},
            "peak_rss_mb": peaks,
            "label_agreement": man["metrics"]["label_agreement"]["ordered"],
            "counts_add_up": man["counts"]["adds_up"],
            "run_dir_bytes_per_doc": run_dir_bytes(work / f"run{nodes}", a.docs),
        }
        # each finished run is kept at once: a long measurement that is stopped keeps its runs
        (work / f"scale_{a.docs}.json").write_text(json.dumps(out, indent=1))
    runs = out["runs"]
    if "1" in runs and "2" in runs:
        s1, s2 = runs["1"]["stage_seconds"], runs["2"]["stage_seconds"]
        out["speedup_2_over_1"] = {k: round(s1[k] / s2[k], 2) for k in s1 if k in s2 and s2[k] > 0}
        out["speedup_2_over_1"]["total"] = round(runs["1"]["seconds_total"] / runs["2"]["seconds_total"], 2)
    return out


# Stages that run as tasks on every node (the rest run in the driver, one process).
PARALLEL_STAGES = ("ingest", "tokenize", "embed", "neighbors", "write")
# How a stage's cost per document grows from the synthetic documents to the target's:
# with text bytes (ingest reads them, tokenize encodes them, embed pools one vector per token,
# the lexical signal counts their words, write copies them).
BYTES_STAGES = ("ingest", "tokenize", "embed", "neighbors", "write")


def project(a) -> dict:
    """Hours per stage for a target corpus, from a `scale` JSON (see docs/scale.md for the assumptions)."""
    measured = sorted((json.loads(Path(f).read_text()) for f in a.measured), key=lambda r: r["docs"])
    m = measured[-1]  # the largest measurement
    n0 = m["docs"]
    # the run on the most nodes: its task stages ran on every node (1 CPU each), so
    # nodes x seconds is the CPU time they took, imbalance and task overheads included
    nodes0 = max(int(k) for k in m["runs"])
    many = m["runs"][str(nodes0)]
    # a driver stage's cost does not depend on the nodes: the faster of the runs is the one
    # less disturbed by other work on the machine (and by numba compiling on first use)
    best = {st: min(r["stage_seconds"][st] for r in m["runs"].values() if st in r["stage_seconds"])
            for st in many["stage_seconds"]}
    # with a smaller measurement too, a driver stage's seconds are fitted as fixed + per document
    # (the report, for one, costs seconds of drawing at any size); else all per document
    fixed = {st: 0.0 for st in best}
    if len(measured) > 1 and measured[0]["docs"] < n0:
        small = measured[0]
        for st in best:
            s0 = min(r["stage_seconds"].get(st, np.inf) for r in small["runs"].values())
            if np.isfinite(s0) and st not in PARALLEL_STAGES:
                slope = max(0.0, (best[st] - s0) / (n0 - small["docs"]))
                fixed[st] = max(0.0, best[st] - slope * n0)
    bytes_factor = (a.tokens / a.docs * a.bytes_per_token) / m["bytes_per_doc"]
    # neighbours: per-query cost grows with the documents a task searches (partition + spill):
    # assumed sqrt (IVF lists and pruned lexical candidates both grow about that way)
    searched0 = many.get("searched_per_partition_max") or n0 * min(1.0, 2 / many.get("partitions", 1))
    searched = min(a.docs, 2 * a.partition_size)
    knn_factor = (searched / searched0) ** 0.5
    per_doc_bytes = many.get("run_dir_bytes_per_doc")
    out = {"measured_docs": [r["docs"] for r in measured], "measured_nodes": nodes0,
           "driver_fixed_seconds": {k: round(v, 1) for k, v in fixed.items() if v}, "target_docs": a.docs, "target_tokens": a.tokens,
           "bytes_factor": round(bytes_factor, 2),
           # arrays do not grow with text length (embeddings, kNN lists); the store does
           "run_dir_tb": round((per_doc_bytes["arrays"] + per_doc_bytes["store"] * bytes_factor) * a.docs / 1e12, 2)
           if per_doc_bytes else None,
           "searched_per_task": {"measured": round(searched0), "target": round(searched)},
           "knn_search_factor": round(knn_factor, 2),
           "cpu_seconds_per_1k_docs": {st: round(many["stage_seconds"][st] * nodes0 / n0 * 1000, 3)
                                       for st in PARALLEL_STAGES if st in many["stage_seconds"]},
           "cores_per_node": a.cores_per_node, "by_nodes": {}}
    for nodes in a.target_nodes:
        hours = {}
        for st in many["stage_seconds"]:
            if st in PARALLEL_STAGES:
                per_doc = many["stage_seconds"][st] * nodes0 / n0  # CPU seconds per document
            else:
                per_doc = (best[st] - fixed[st]) / n0
            per_doc *= bytes_factor if st in BYTES_STAGES else 1.0
            if st == "neighbors":
                per_doc *= knn_factor
            workers = nodes * a.cores_per_node if st in PARALLEL_STAGES else 1
            hours[st] = (fixed[st] + per_doc * a.docs / workers) / 3600
        hours = {k: round(v, 2) for k, v in hours.items()}
        out["by_nodes"][str(nodes)] = {"stage_hours": hours, "total_hours": round(sum(hours.values()), 1),
                                       "driver_hours": round(sum(v for k, v in hours.items() if k not in PARALLEL_STAGES), 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--jargon-dir", default="/usr/share/dictd")
    s = sub.add_parser("scale")
    s.add_argument("--docs", type=int, default=100_000)
    s.add_argument("--topics", type=int, default=200)
    s.add_argument("--words", type=int, default=120, help="words per synthetic document")
    s.add_argument("--run-options", default="--partitions 4",
                   help="options of every `contextsort run` (default: 4 partitions on any number of nodes, so that "
                        "1 and 2 nodes do the same work; automatic partitions would give 1 node 1 partition and "
                        "2 nodes 2 that each search both)")
    s.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    s.add_argument("--pin-cores", action="store_true",
                   help="node i and its processes on CPU core i, the driver on the head's core 0: nodes behave "
                        "like separate 1-core machines (unpinned, a 1-CPU task's numba/FAISS threads use every core)")
    for p in (q, s):
        p.add_argument("--work", default=None, help="folder for corpora and runs (default: a temp folder)")
        p.add_argument("--port", type=int, default=6480)
    pr = sub.add_parser("project", help="project hours for a target corpus from a `scale` JSON (no Ray needed)")
    pr.add_argument("measured", nargs="+", help="JSON printed by the scale mode (several sizes: driver stages are fitted as fixed + per document)")
    pr.add_argument("--docs", type=float, default=235e6, help="target documents (the paper: 235M)")
    pr.add_argument("--tokens", type=float, default=306e9, help="target tokens (the paper: 306B)")
    pr.add_argument("--bytes-per-token", type=float, default=4.0, help="UTF-8 bytes per token of the target text")
    pr.add_argument("--partition-size", type=float, default=1e6, help="documents per partition (the default automatic size)")
    pr.add_argument("--cores-per-node", type=int, default=32)
    pr.add_argument("--target-nodes", type=int, nargs="+", default=[8, 32, 128])
    a = ap.parse_args()
    run = {"quality": quality, "scale": scale, "project": project}[a.mode]
    print(json.dumps(run(a), indent=1))


if __name__ == "__main__":
    main()
