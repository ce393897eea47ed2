"""Write stage, local vs Ray: seconds to write ordered.jsonl + ordered.parquet (JSON out).

A synthetic document store (N documents of about --chars characters, a few fields)
or the BBC sample's store from a run directory, a random order; the local writer
(`write_ordered`) against `write_ordered_parallel` on a local Ray with each worker
count. Ray start-up is reported apart; the files are checked equal to the local ones.

    python benchmarks/write_parallel.py --n 200000 --workers 2 --repeat 3
    python benchmarks/write_parallel.py --run-dir /tmp/demo --workers 2   # an existing run's store
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from contextsort.corpus import DocStore, DocStoreWriter, Record  # noqa: E402
from contextsort.formats import write_ordered  # noqa: E402
from contextsort.formats.parallel import write_ordered_parallel  # noqa: E402

WORDS = "the of and to in a is that for it as was with be by on not he this are or his from at which".split()


def make_store(path: Path, n: int, chars: int, seed: int = 0) -> DocStore:
    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS + [f"w{i}" for i in range(2000)])
    w = DocStoreWriter(path)
    words_per_doc = max(1, chars // 6)
    for i in range(n):
        text = " ".join(vocab[rng.integers(0, len(vocab), words_per_doc)])
        fields = {"id": f"doc{i}", "text": text, "label": f"c{i % 20}", "url": f"https://example.org/{i}", "score": float(i % 97) / 7}
        w.add(Record("synthetic.jsonl", i + 1, fields["id"], text, fields))
    w.close()
    return DocStore(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--chars", type=int, default=1000, help="characters per synthetic document")
    ap.add_argument("--run-dir", default=None, help="use this run's store (and order.npy) instead of a synthetic corpus")
    ap.add_argument("--workers", type=int, nargs="*", default=[2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default="/tmp/contextsort_write_bench")
    a = ap.parse_args()

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    if a.run_dir:
        store = DocStore(Path(a.run_dir) / "store")
        order = np.load(Path(a.run_dir) / "order.npy")
        corpus = {"run_dir": a.run_dir}
    else:
        sd = work / f"store_{a.n}_{a.chars}"
        t0 = time.perf_counter()
        if not (sd / "text_hash.npy").exists():
            shutil.rmtree(sd, ignore_errors=True)
            make_store(sd, a.n, a.chars)
        store = DocStore(sd)
        order = np.random.default_rng(1).permutation(len(store))
        corpus = {"synthetic": len(store), "chars": a.chars, "store_seconds": round(time.perf_counter() - t0, 1)}
    formats = ["jsonl", "parquet"]
    out = {"documents": int(len(order)), "text_mb": round(store.text_bytes() / 2**20, 1), **corpus, "repeat": a.repeat}

    loc = work / "local"
    secs = []
    for _ in range(a.repeat):
        shutil.rmtree(loc, ignore_errors=True)
        loc.mkdir()
        t = time.perf_counter()
        write_ordered(loc, store, order, formats, "label")
        secs.append(time.perf_counter() - t)
    out["local_seconds"] = [round(s, 2) for s in secs]
    out["local_median"] = round(statistics.median(secs), 2)
    out["output_mb"] = round(sum(f.stat().st_size for f in loc.iterdir()) / 2**20, 1)

    import pyarrow.parquet as pq

    from contextsort.distributed import RaySession

    ref_pq = pq.read_table(loc / "ordered.parquet")
    for w in a.workers:
        t = time.perf_counter()
        with RaySession(num_cpus=w, quiet=True) as s:
            start = time.perf_counter() - t
            d = work / f"ray{w}"
            secs = []
            for _ in range(a.repeat):
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir()
                t = time.perf_counter()
                _, info = write_ordered_parallel(d, store, order, formats, "label", s.mapper(), w)
                secs.append(time.perf_counter() - t)
        same = (d / "ordered.jsonl").read_bytes() == (loc / "ordered.jsonl").read_bytes() and pq.read_table(d / "ordered.parquet").equals(ref_pq)
        med = statistics.median(secs)
        out[f"ray_{w}"] = {"seconds": [round(x, 2) for x in secs], "median": round(med, 2), "parts": info["parts"],
                           "ray_start_seconds": round(start, 1), "speedup_vs_local": round(out["local_median"] / med, 2), "phases_last": info["phase_seconds"],
                           "files_equal_local": same}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
