"""Seconds to read every document's text back from a store: one decode per document
(`DocStore.text`, what the tokenize stage did before round 7) against one per range of
documents (`DocStore.texts`, cut at character offsets), in the tokenize stage's 1 MB batches;
JSON out, medians of --repeats interleaved passes. The two lists are checked equal.

    PYTHONPATH=src python benchmarks/store_texts.py [--store RUN/store] > store_texts.json

Without --store, the store of a fresh ingest of throughput.py's BBC windows (31k documents).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    from contextsort.corpus import DocStore
    from contextsort.pack import TOKENIZE_BATCH_BYTES, batch_stop
    from contextsort.parallel_ingest import ingest_inputs

    with tempfile.TemporaryDirectory() as tmp:
        store_dir = a.store
        if store_dir is None:
            from throughput import build_corpus

            build_corpus(Path(tmp) / "corpus.jsonl")
            ingest_inputs([str(Path(tmp) / "corpus.jsonl")], Path(tmp) / "store", Path(tmp) / "parts")
            store_dir = Path(tmp) / "store"
        store = DocStore(store_dir)
        n = len(store)
        cuts, s = [], 0
        while s < n:
            e = batch_stop(store, s, n, TOKENIZE_BATCH_BYTES)
            cuts.append((s, e))
            s = e
        per_doc, per_range = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            one = [store.text(i) for a_, b_ in cuts for i in range(a_, b_)]
            per_doc.append(time.perf_counter() - t)
            t = time.perf_counter()
            ranged = [x for a_, b_ in cuts for x in store.texts(a_, b_)]
            per_range.append(time.perf_counter() - t)
        assert one == ranged
    doc, rng = statistics.median(per_doc), statistics.median(per_range)
    print(json.dumps({"documents": n, "batches": len(cuts), "text_bytes": store.text_bytes(),
                      "per_document_s": round(doc, 4), "per_range_s": round(rng, 4), "speedup": round(doc / rng, 2)}, indent=1))


if __name__ == "__main__":
    main()
