"""Packing written in one pass against packing as tasks joined by the driver, JSON out.

    python benchmarks/pack_tasks.py [--tokens 50000000] [--context-length 2048] [--workers 2] [--runs 3] [--ray]

A synthetic token stream (seeded; documents of log-normal length, uint16 tokens) is packed
(concat, formats megatron + parquet + numpy) three ways, each `--runs` times (medians):

- one_pass: the local engine's path;
- tasks_one_shard: `--workers` tasks run one after another in this process, then the
  driver joins them into one shard per format (the cost the join adds);
- tasks_shards: the same with `--shard-size` equal to a task's range (joins are renames);
- with --ray, tasks_one_shard again as Ray tasks on a local Ray of `--workers` CPUs (start
  it inside `unshare --net`, see DEVELOPERS.md).

Every variant's files are checked equal, byte for byte, to one_pass's (shards differ in
layout for tasks_shards, so there the contexts are compared).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from contextsort.pack import TokenStream, pack_contexts  # noqa: E402

FORMATS = ["megatron", "parquet", "numpy"]


def synthetic_stream(directory: Path, tokens: int, seed: int = 0) -> int:
    """A token stream folder as the tokenize stage writes it; returns the number of documents."""
    rng = np.random.default_rng(seed)
    lens = []
    total = 0
    while total < tokens:
        n = int(min(20000, max(8, rng.lognormal(6.0, 1.0))))
        lens.append(n)
        total += n
    lens = np.asarray(lens, dtype=np.int64)
    directory.mkdir(parents=True)
    ids = rng.integers(3, 32000, size=int(lens.sum()), dtype=np.uint16)
    off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    ids[off[1:] - 1] = 2  # EOS closes every document
    ids.tofile(directory / "stream.bin")
    np.save(directory / "doc_off.npy", off)
    meta = {"tokenizer": "synthetic", "tokenizer_fingerprint": "synthetic", "vocab_size": 32000, "dtype": "uint16",
            "eos_id": 2, "bos_id": None, "bos": False, "documents": len(lens), "tokens": int(off[-1])}
    (directory / "meta.json").write_text(json.dumps(meta))
    return len(lens)


def in_process(fn, args_list):
    for i, args in enumerate(args_list):
        yield i, fn(*args)


def digest(packed: Path) -> dict[str, str]:
    return {str(p.relative_to(packed)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(packed.rglob("*")) if p.is_file() and p.name != "pack.json"}


def contexts(packed: Path) -> str:
    info = json.loads((packed / "pack.json").read_text())
    h = hashlib.sha256()
    for f in info["files"]["numpy"]:
        if f.endswith(".bin"):
            h.update((packed / f).read_bytes())
    return h.hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=50_000_000)
    ap.add_argument("--context-length", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ray", action="store_true")
    a = ap.parse_args(argv)
    L = a.context_length
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_docs = synthetic_stream(tmp / "tokens", a.tokens)
        stream = TokenStream.open(tmp / "tokens")
        order = np.random.default_rng(1).permutation(n_docs)
        n_ctx = -(-int(stream.doc_off[-1]) // L)
        per_task = -(-(-(-n_ctx // a.workers)) // 256) * 256
        variants = {"one_pass": {}, "tasks_one_shard": {"mapper": in_process, "workers": a.workers},
                    "tasks_shards": {"mapper": in_process, "workers": a.workers, "shard_bytes": per_task * L * 2}}
        engine = None
        if a.ray:
            from contextsort.engines.ray import RayEngine

            engine = RayEngine(workers=a.workers)
            variants["ray_tasks_one_shard"] = {"mapper": engine.map, "workers": a.workers}
        pack_contexts(stream, order[:100], tmp / "warm", context_length=L, formats=FORMATS)  # numba compiles
        secs: dict[str, list[float]] = {k: [] for k in variants}
        same: dict[str, bool] = {}
        ref_files = ref_ctx = None
        for _ in range(a.runs):
            for name, kw in variants.items():
                out = tmp / name
                t = time.perf_counter()
                info = pack_contexts(stream, order, out, context_length=L, formats=FORMATS, seed=0, **kw)
                secs[name].append(time.perf_counter() - t)
                if name == "one_pass":
                    ref_files, ref_ctx = digest(out), contexts(out)
                    same[name] = True
                else:
                    same[name] = (contexts(out) == ref_ctx) if name == "tasks_shards" else (digest(out) == ref_files)
                    assert info["write_tasks"] >= 2, info["write_tasks"]
        if engine is not None:
            engine.close()
    med = {k: round(float(np.median(v)), 3) for k, v in secs.items()}
    result = {"benchmark": "pack_tasks", "tokens": a.tokens, "documents": n_docs, "contexts": n_ctx, "context_length": L,
              "workers": a.workers, "runs": a.runs, "formats": FORMATS, "cpus": os.cpu_count(),
              "load_average_1m": round(os.getloadavg()[0], 2), "median_seconds": med,
              "ratio_to_one_pass": {k: round(v / med["one_pass"], 3) for k, v in med.items()},
              "identical_to_one_pass": same}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
