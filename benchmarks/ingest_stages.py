"""Where the JSONL fast path's time goes: its steps on each 4 MB block, timed one by one.

The steps of `arrow_ingest.json_lines_block` and the store's hashes, done by hand on the
blocks of one file, one after another (the store's writes are not in it, and ingest itself
runs them in a thread ahead of the writes: prefetch.py). Prints JSON: seconds per step
(median of `--repeats` passes over the file) and each step's share of the loop.

    PYTHONPATH=src python benchmarks/ingest_stages.py CORPUS.jsonl
(CORPUS.jsonl: e.g. the corpus `benchmarks/ingest.py --work DIR` leaves in DIR)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from contextsort import arrow_ingest as ai
from contextsort.corpus import plain_blocks
from contextsort.textkey import bytes_hashes, hash_utf8, hash_utf8_blanks


def one_pass(path: str) -> dict[str, float]:
    acc: dict[str, float] = {}
    clock = time.perf_counter

    def step(name: str, t0: float) -> float:
        acc[name] = acc.get(name, 0.0) + clock() - t0
        return clock()

    t = clock()
    for block in plain_blocks(path):
        t = step("read", t)
        ai.valid_utf8(block)
        data = np.frombuffer(block, dtype=np.uint8)  # the line-shape checks of json_lines_block
        inner = np.flatnonzero(data == 10)[:-1]
        ((data[inner - 1] == 125) & (data[inner + 1] == 123)).all()
        t = step("fast_path_checks", t)
        table = pj.read_json(pa.py_buffer(block), read_options=pj.ReadOptions(block_size=len(block) // 2 + 2))
        t = step("pyarrow_read_json", t)
        for c in table.columns:
            ai.field_kinds(c)
        text = table.column("text").combine_chunks()
        lab = table.column("label").combine_chunks()
        pc.index_in(lab, value_set=pc.unique(lab))
        data, offsets = ai.string_buffers(text)
        t = step("kinds_labels_offsets", t)
        hash_utf8_blanks(data, offsets)  # the first call also loads (or compiles) the kernel: warmed in main()
        t = step("text_hash_and_blank_check", t)
        bytes_hashes(*ai.string_buffers(ai.json_values(table.column("id").combine_chunks())))
        t = step("ids", t)
    return acc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    hash_utf8(b"A\xce\xa3", np.array([0, 3]))  # numba's kernel and the Unicode tables, outside the timings
    runs = [one_pass(args.jsonl) for _ in range(args.repeats)]
    sec = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    total = sum(sec.values())
    print(json.dumps({"seconds": {k: round(v, 4) for k, v in sec.items()}, "total": round(total, 4),
                      "share": {k: round(v / total, 3) for k, v in sec.items()}}, indent=1))


if __name__ == "__main__":
    main()
