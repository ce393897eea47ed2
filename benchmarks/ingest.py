"""Ingest speed against the speed of reading the same bytes, JSONL and Parquet.

The corpus is `throughput.py`'s: every BBC News article as 120-word windows every 24
words (about 31k documents, 22 MB of JSONL), and the same rows as Parquet (row groups of
8,192 rows). Timed, interleaved, `--repeats` times each (medians):

- `raw_read`: the file's bytes read into memory (page cache: the disk's best case);
- `pyarrow_json` / `pyarrow_parquet`: `pyarrow.json.read_json` / `pyarrow.parquet.read_table`;
- the same JSONL compressed (`corpus.jsonl.gz`, gzip level 6; `corpus.jsonl.zst`, zstd level 3):
  `decompress_gz` / `decompress_zst` (the whole file decompressed in memory, the least any
  reader does), `pyarrow_json_gz` / `pyarrow_json_zst` (`read_json` of the compressed file),
  `ingest_1_gz` / `ingest_1_zst`;
- `ingest_1`: our ingest (`parallel_ingest.ingest_inputs`), one piece per file, in this process;
- `ingest_pieces`: the same input cut into `--pieces` pieces, run by a pool of `--workers`
  processes (what the Ray engine does with its tasks), shards joined by this process;
- `before` (with `--before SRC`): the ingest of another checkout's `src` (CorpusReader +
  DocStoreWriter, as the stage did it), in a subprocess, for the same files.

Every variant's store is checked against `ingest_1`'s (same records, texts, rejects).
Prints JSON: seconds, MB/s and docs/s of each. Quote ratios from one run (shared machine):

    git archive BASE src | tar -x -C /tmp/before   # the code before
    PYTHONPATH=src python benchmarks/ingest.py --before /tmp/before/src > ingest.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BEFORE = """
import json, sys, time
from pathlib import Path
import pyarrow.compute, pyarrow.json, pyarrow.parquet  # imported before the clock starts, as in this process
from contextsort.corpus import CorpusReader, DocStoreWriter, Reject
t = time.perf_counter()
w = DocStoreWriter(Path(sys.argv[2]))
n = 0
for item in CorpusReader([sys.argv[1]]):
    if not isinstance(item, Reject):
        w.add(item)
        n += 1
w.close()
print(json.dumps({"seconds": time.perf_counter() - t, "documents": n}))
"""


def pool_mapper(pool: ProcessPoolExecutor):
    """An engine-like map over a process pool (results in submission order)."""
    def mapper(fn, args_list, ordered=True):
        futures = [pool.submit(fn, *args) for args in args_list]
        for k, f in enumerate(futures):
            yield k, f.result()
    return mapper


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pieces", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--before", type=Path, default=None, help="src folder of the code to compare with")
    args = ap.parse_args()

    import pyarrow.json as pj
    import pyarrow.parquet as pq
    import zstandard

    from contextsort.corpus import DocStore
    from contextsort.parallel_ingest import ingest_inputs
    from throughput import build_corpus

    work = args.work or Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    jsonl = work / "corpus.jsonl"
    if not jsonl.exists():
        build_corpus(jsonl)
    parquet = work / "corpus.parquet"
    if not parquet.exists():
        pq.write_table(pj.read_json(jsonl), parquet, row_group_size=8192)
    gz, zst = work / "corpus.jsonl.gz", work / "corpus.jsonl.zst"
    if not gz.exists():
        gz.write_bytes(gzip.compress(jsonl.read_bytes(), compresslevel=6))
    if not zst.exists():
        zst.write_bytes(zstandard.ZstdCompressor(level=3).compress(jsonl.read_bytes()))
    sizes = {"jsonl": jsonl.stat().st_size, "parquet": parquet.stat().st_size}  # MB/s of the compressed: of the JSONL's bytes
    n_docs = pq.ParquetFile(parquet).metadata.num_rows
    pool = ProcessPoolExecutor(args.workers)
    list(pool.map(abs, range(args.workers)))  # start the workers outside the timings

    def ours(path: Path, pieces: int | None, mapper=None):
        out = work / "stores" / f"{path.suffix[1:]}-{pieces or 1}"
        shutil.rmtree(out, ignore_errors=True)
        per = -(-path.stat().st_size // pieces) if pieces else None
        rows = -(-n_docs // pieces) if pieces else None
        if path.suffix in (".gz", ".zst"):
            out, per, rows = work / "stores" / f"jsonl{path.suffix}", None, None
            shutil.rmtree(out, ignore_errors=True)
        return ingest_inputs([str(path)], out / "store", out / "parts", mapper=mapper, piece_bytes=per, rows_per_piece=rows)

    def before(path: Path):
        out = work / "stores" / f"before-{path.suffix[1:]}"
        shutil.rmtree(out, ignore_errors=True)
        env = dict(os.environ, PYTHONPATH=str(args.before))
        p = subprocess.run([sys.executable, "-c", BEFORE, str(path), str(out)], env=env, capture_output=True, text=True, check=True)
        return json.loads(p.stdout)["seconds"]

    variants = {
        "raw_read_jsonl": lambda: jsonl.read_bytes(),
        "pyarrow_json": lambda: pj.read_json(jsonl),
        "ingest_1_jsonl": lambda: ours(jsonl, None),
        f"ingest_{args.pieces}_pieces_{args.workers}_procs_jsonl": lambda: ours(jsonl, args.pieces, pool_mapper(pool)),
        "raw_read_parquet": lambda: parquet.read_bytes(),
        "pyarrow_parquet": lambda: pq.read_table(parquet),
        "ingest_1_parquet": lambda: ours(parquet, None),
        f"ingest_{args.pieces}_pieces_{args.workers}_procs_parquet": lambda: ours(parquet, args.pieces, pool_mapper(pool)),
        "decompress_gz": lambda: gzip.decompress(gz.read_bytes()),
        "pyarrow_json_gz": lambda: pj.read_json(gz),
        "ingest_1_gz": lambda: ours(gz, None),
        "decompress_zst": lambda: zstandard.ZstdDecompressor().decompress(zst.read_bytes()),
        "pyarrow_json_zst": lambda: pj.read_json(zst),
        "ingest_1_zst": lambda: ours(zst, None),
    }
    if args.before:
        variants["before_jsonl"] = lambda: before(jsonl)
        variants["before_parquet"] = lambda: before(parquet)
        variants["before_gz"] = lambda: before(gz)
        variants["before_zst"] = lambda: before(zst)
    times: dict[str, list[float]] = {k: [] for k in variants}
    results = {}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            t = time.perf_counter()
            got = fn()
            took = time.perf_counter() - t
            times[name].append(got if name.startswith("before") else took)  # before: its own ingest time
            results[name] = got
    pool.shutdown()

    # every ingest gives the same documents
    ref = DocStore(work / "stores" / "jsonl-1" / "store")
    for name, res in results.items():
        if name.startswith("ingest"):
            assert res.writer.n == len(ref) and not res.rejects, name
    for d in (work / "stores").iterdir():
        st = DocStore(d / "store") if (d / "store").exists() else DocStore(d)
        assert len(st) == len(ref) and (st.dir / "text.bin").read_bytes() == (ref.dir / "text.bin").read_bytes(), d
        assert all(st.record(i) == ref.record(i) for i in range(0, len(ref), 997)), d

    out = {"documents": n_docs, "bytes": sizes, "repeats": args.repeats, "workers": args.workers, "cpus": os.cpu_count(),
           "load_average": os.getloadavg()[0], "variants": {}}
    for name, ts in times.items():
        sec = statistics.median(ts)
        size = sizes["parquet" if "parquet" in name else "jsonl"]  # compressed: the JSONL bytes they hold
        out["variants"][name] = {"seconds": round(sec, 3), "MB_per_s": round(size / sec / 1e6, 1), "docs_per_s": round(n_docs / sec)}
    v = out["variants"]
    for fmt, reader in (("jsonl", "pyarrow_json"), ("parquet", "pyarrow_parquet")):
        one = v[f"ingest_1_{fmt}"]["seconds"]
        ratios = {"ingest_1_vs_" + reader: round(one / v[reader]["seconds"], 2),
                  "pieces_speedup": round(one / v[f"ingest_{args.pieces}_pieces_{args.workers}_procs_{fmt}"]["seconds"], 2)}
        if args.before:
            ratios["speedup_vs_before"] = round(v[f"before_{fmt}"]["seconds"] / one, 2)
        out[f"ratios_{fmt}"] = ratios
    for fmt in ("gz", "zst"):
        one = v[f"ingest_1_{fmt}"]["seconds"]
        ratios = {"ingest_1_vs_pyarrow_json_" + fmt: round(one / v[f"pyarrow_json_{fmt}"]["seconds"], 2),
                  "ingest_1_vs_decompress": round(one / v[f"decompress_{fmt}"]["seconds"], 2),
                  "ingest_1_vs_ingest_1_jsonl": round(one / v["ingest_1_jsonl"]["seconds"], 2)}
        if args.before:
            ratios["speedup_vs_before"] = round(v[f"before_{fmt}"]["seconds"] / one, 2)
        out[f"ratios_{fmt}"] = ratios
    print(json.dumps(out, indent=1))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
