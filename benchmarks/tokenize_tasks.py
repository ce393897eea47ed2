"""The token store written in one pass against ranges of documents tokenized as tasks, JSON out.

    PYTHONPATH=src python benchmarks/tokenize_tasks.py [--stride 24] [--workers 2] [--runs 3] [--ray]

The corpus: throughput.py's BBC windows (every article cut into 120-word windows every
`--stride` words: about 31k documents at 24). Its store is tokenized with the Llama-2
tokenizer (as the tokenize stage does), each variant `--runs` times (medians):

- one_pass: the local engine's path (threads encode ahead, HF tokenizers on every core);
- tasks_in_process: about 2 x `--workers` ranges, each encoded in one thread, run one
  after another in this process, then joined (what the task split costs on one core);
- with --ray, the same ranges as Ray tasks on a local Ray of `--workers` CPUs (start it
  inside `unshare --net`, see DEVELOPERS.md).

Every variant's stream.bin and doc_off.npy are checked equal, byte for byte, to one_pass's.
On a shared machine quote the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from contextsort.corpus import CorpusReader, DocStore, DocStoreWriter  # noqa: E402
from contextsort.pack import tokenize_store  # noqa: E402
from contextsort.tokenizer import get_tokenizer  # noqa: E402
from throughput import build_corpus  # noqa: E402


def in_process(fn, args_list):
    for i, args in enumerate(args_list):
        yield i, fn(*args)


def digest(d: Path) -> str:
    h = hashlib.sha256()
    for name in ("stream.bin", "doc_off.npy"):
        h.update((d / name).read_bytes())
    return h.hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stride", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ray", action="store_true")
    a = ap.parse_args(argv)
    tok = get_tokenizer("llama2")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_docs = build_corpus(tmp / "corpus.jsonl", stride=a.stride)
        w = DocStoreWriter(tmp / "store")
        for rec in CorpusReader([str(tmp / "corpus.jsonl")]):
            w.add(rec)
        w.close()
        store = DocStore(tmp / "store")
        variants = {"one_pass": {}, "tasks_in_process": {"mapper": in_process, "workers": a.workers, "tokenizer_spec": "llama2"}}
        engine = None
        if a.ray:
            from contextsort.engines.ray import RayEngine

            engine = RayEngine(workers=a.workers)
            variants["ray_tasks"] = {"mapper": engine.map, "workers": a.workers, "tokenizer_spec": "llama2"}
            tokenize_store(store, tok, tmp / "warm", **variants["ray_tasks"])  # Ray starts, workers load the tokenizer
        secs: dict[str, list[float]] = {k: [] for k in variants}
        same, tasks = {}, {}
        ref = None
        meta = {}
        for _ in range(a.runs):
            for name, kw in variants.items():
                t = time.perf_counter()
                meta = tokenize_store(store, tok, tmp / name, **kw)
                secs[name].append(time.perf_counter() - t)
                tasks[name] = meta["tasks"]
                if name == "one_pass":
                    ref = digest(tmp / name)
                same[name] = digest(tmp / name) == ref
        if engine is not None:
            engine.close()
    med = {k: statistics.median(v) for k, v in secs.items()}
    out = {
        "documents": n_docs, "tokens": meta["tokens"], "workers": a.workers, "runs": a.runs,
        "tasks": tasks, "seconds_median": {k: round(v, 3) for k, v in med.items()},
        "ratio_to_one_pass": {k: round(v / med["one_pass"], 3) for k, v in med.items()},
        "byte_identical": same,
    }
    print(json.dumps(out, indent=2))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
