"""Seconds (wall and CPU) of each step of the neighbors stage's lexical + hybrid part, for
two source trees, each in fresh processes, alternated (before, after, after, before, ...).
Each process warms every kernel on the same inputs first (numba's cache loads are not
counted), then times one pass of the steps the stage runs. Prints JSON: per tree and step
the median wall and CPU seconds. CPU seconds (both threads together) are the steadier
figure on a shared machine.

    git archive main src | tar -x -C /tmp/before
    PYTHONPATH=src python benchmarks/hybrid_steps.py RUN_DIR --before /tmp/before/src

RUN_DIR: a finished default run on the corpus (its token store, embeddings, dense lists).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def steps(run: str) -> dict:
    """One warm-up pass and one timed pass of the stage's steps (in this process's tree)."""
    import numpy as np

    from contextsort import similarity as S
    from contextsort.neighbors import knn_graph
    from contextsort.pack import TokenStream
    from contextsort.rowfile import RowFile
    from contextsort.stages.tokenize import TOKENIZER
    from contextsort.tokenizer import get_tokenizer
    from contextsort.tokens import content_spans

    emb = RowFile(f"{run}/embeddings.npy")
    # the stage's dense walk lists (16 per document; the run keeps only its dedup lists, 10)
    d_ids, d_sims, _ = knn_graph(np.load(f"{run}/embeddings.npy"), k=16, seed=1234)
    stream = TokenStream.open(f"{run}/tokens")
    start, length = content_spans(stream)
    tok = get_tokenizer(TOKENIZER)
    out = {}
    for rep in range(2):
        times: dict[str, list[float]] = {}
        w, c = time.perf_counter(), cpu_seconds()

        def tick(name: str) -> None:
            nonlocal w, c
            times[name] = [round(time.perf_counter() - w, 4), round(cpu_seconds() - c, 4)]
            w, c = time.perf_counter(), cpu_seconds()

        surfaces = S.token_surfaces(tok); tick("token_surfaces")
        pieces = S.word_pieces(surfaces); tick("word_pieces")
        counts = S.word_term_counts(stream.tokens, start, length, pieces); tick("word_term_counts")
        counts = S.drop_common_terms(counts, S.LEXICAL_MAX_DF, copy=False); tick("drop_common_terms")
        x = S.LexicalModel.fit(counts, "tfidf").transform(counts, copy=False); tick("weights")
        x = x.tocsr().astype(np.float32, copy=False)
        if hasattr(S, "compact_columns"):
            x = S.compact_columns(x)
        tick("compact_columns")
        n = x.shape[0]
        x.sort_indices()
        xp = S.prune_rows(x, 64, 1000); tick("prune_rows")
        xt = S.postings(xp); tick("postings")
        cand, _ = S.postings_topk(xp, xt, 64, 0, n); tick("postings_topk")
        l_ids, l_sims = S.rescore(cand, 16, lexical=x, first=0, n_docs=n); tick("lexical_rescore")
        d_scale = S.signal_scale(d_ids, d_sims, dense=emb, seed=1234); tick("signal_scale_dense")
        l_scale = S.signal_scale(l_ids, l_sims, lexical=x, seed=1234); tick("signal_scale_lexical")
        c2 = np.ascontiguousarray(np.concatenate([d_ids, l_ids], axis=1))
        S.candidate_dots(emb, c2, 0); tick("hybrid_candidate_dots")
        S.rescore(c2, 16, dense=emb, lexical=x, weight=0.1, dense_scale=d_scale, lexical_scale=l_scale,
                  reserve=True, first=0, n_docs=n); tick("hybrid_rescore_with_dots")
        out = times
    out["total"] = [round(sum(v[0] for v in out.values()), 4), round(sum(v[1] for v in out.values()), 4)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--before", help="src directory of the tree to compare against")
    ap.add_argument("--after", default=str(Path(__file__).resolve().parents[1] / "src"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--one", action="store_true", help="time this process's tree once, print JSON (used by the driver)")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(steps(args.run)))
        return
    trees = {"before": args.before, "after": args.after}
    got: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        for name in ("before", "after", "after", "before"):
            env = {**os.environ, "PYTHONPATH": trees[name]}
            res = subprocess.run([sys.executable, __file__, args.run, "--one"], env=env, check=True,
                                 capture_output=True, text=True)
            got[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
    med = {name: {step: {"wall": round(statistics.median(r[step][0] for r in rs), 3),
                         "cpu": round(statistics.median(r[step][1] for r in rs), 3)} for step in rs[0]}
           for name, rs in got.items()}
    print(json.dumps({"run": args.run, "processes_per_tree": len(got["after"]), "median": med,
                      "cpu_speedup": round(med["before"]["total"]["cpu"] / med["after"]["total"]["cpu"], 3),
                      "wall_speedup": round(med["before"]["total"]["wall"] / med["after"]["total"]["wall"], 3)}, indent=1))


if __name__ == "__main__":
    main()
