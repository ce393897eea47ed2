"""Seconds of the hybrid merge (`similarity.hybrid_knn`) with the embeddings memory-mapped
(another source tree, e.g. the commit before `rowfile.py`) against read slab by slab from the
file (this tree), alternated in one process on the same inputs; the graphs are asserted
equal every time. Prints JSON.

    git archive ed93a5c src | tar -x -C /tmp/old_src
    PYTHONPATH=src python benchmarks/hybrid_reads.py /work/cache/mem4/run --old /tmp/old_src/src
    PYTHONPATH=src python benchmarks/hybrid_reads.py /work/cache/mem4/run --old /tmp/old_src/src --n 100000 \
        --dense /tmp/lexical_memory_dense.npz   # left by lexical_memory.py --first 100000

Inputs: the run's embeddings, token store and dedup lists (the dense lists, as in
`lexical_memory.py`); the lexical vectors and lists are built once and cached in --cache.
The old tree's `contextsort` package is copied to a temporary directory as `contextsort_old`
(its imports are relative). The first round of each compiles and is not counted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--old", required=True, help="src directory of the tree to compare against")
    ap.add_argument("--n", type=int, default=0, help="first N documents (default all)")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cache", default="/tmp/hybrid_reads_cache")
    ap.add_argument("--dense", help="an .npz of dense lists (ids, sims) of the first --n documents, e.g. the one "
                    "`lexical_memory.py --first N` caches; the run's dedup lists point past the first N")
    a = ap.parse_args()

    import scipy.sparse as sp

    from contextsort import similarity as S
    from contextsort.rowfile import RowFile

    tmp = Path(tempfile.mkdtemp())
    shutil.copytree(Path(a.old) / "contextsort", tmp / "contextsort_old")
    sys.path.insert(0, str(tmp))
    import contextsort_old.similarity as OLD

    run = Path(a.run)
    mm = np.load(run / "embeddings.npy", mmap_mode="r")
    n = a.n or mm.shape[0]
    mm = mm[:n]
    cache = Path(a.cache) / f"{n}"
    if not (cache / "x.npz").exists():
        from contextsort.pack import TokenStream
        from contextsort.tokenizer import get_tokenizer
        from contextsort.tokens import content_spans

        stream = TokenStream.open(run / "tokens")
        start, length = content_spans(stream)
        x = S.lexical_vectors_from_ids(stream.tokens, start[:n], np.asarray(length[:n]), get_tokenizer("llama2"), "tfidf")
        del stream
        l_ids, l_sims, _ = S.lexical_knn(x, a.k)
        cache.mkdir(parents=True, exist_ok=True)
        sp.save_npz(cache / "x.npz", x, compressed=False)
        np.save(cache / "l_ids.npy", l_ids)
        np.save(cache / "l_sims.npy", l_sims)
    x = sp.load_npz(cache / "x.npz").tocsr()
    x.has_sorted_indices = True
    l_ids, l_sims = np.load(cache / "l_ids.npy"), np.load(cache / "l_sims.npy")
    if a.dense:
        z = np.load(a.dense)
        d_ids, d_sims = z["ids"], z["sims"]
        if d_ids.shape[0] != n:
            raise SystemExit(f"{a.dense}: lists of {d_ids.shape[0]} documents, --n is {n}")
    elif n < np.load(run / "dedup_ids.npy", mmap_mode="r").shape[0]:
        raise SystemExit("--n below the run's size needs --dense (the run's lists point past the first N)")
    else:
        d_ids, d_sims = np.load(run / "dedup_ids.npy"), np.load(run / "dedup_sims.npy")
    rows = RowFile(run / "embeddings.npy", rows=n)
    t: dict[str, list[float]] = {"memory_map_old": [], "rowfile_new": []}
    for r in range(a.reps + 1):
        t0 = time.perf_counter()
        ref = OLD.hybrid_knn(mm, x, a.k, S.DEFAULT_HYBRID_WEIGHT, (d_ids, d_sims), (l_ids, l_sims))
        t1 = time.perf_counter()
        got = S.hybrid_knn(rows, x, a.k, S.DEFAULT_HYBRID_WEIGHT, (d_ids, d_sims), (l_ids, l_sims))
        t2 = time.perf_counter()
        assert np.array_equal(ref[0], got[0]) and np.array_equal(ref[1], got[1]), "the graphs differ"
        if r:
            t["memory_map_old"].append(round(t1 - t0, 2))
            t["rowfile_new"].append(round(t2 - t1, 2))
    shutil.rmtree(tmp, ignore_errors=True)
    med = {key: statistics.median(v) for key, v in t.items()}
    print(json.dumps({"n": n, "seconds": t, "median": med,
                      "ratio_new_over_old": round(med["rowfile_new"] / med["memory_map_old"], 3), "identical": True}, indent=1))


if __name__ == "__main__":
    main()
