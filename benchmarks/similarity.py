"""Dense vs lexical vs hybrid neighbours, side by side, on the BBC sample and the Jargon File.

Each variant is one full pipeline run (contextsort.Runner, default options otherwise).
Per corpus and variant: label_agreement (BBC: consecutive documents with the same
topic), link_rate (Jargon: consecutive entries that cross-reference each other),
path_weight (sum, mean per step, ratio to the bound; each graph in its own similarity
units), adjacent_similarity (dense cosine of consecutive documents, comparable across
variants), duplicates removed, and seconds (neighbors stage, total). Also: recall of
the approximate (pruned) lexical kNN against the exact one, and what a lexical dedup
threshold would remove compared with the dense cosine 0.97.

    PYTHONPATH=src python benchmarks/similarity.py [--quick] > similarity.json

The Jargon File comes from Debian's dict-jargon (`apt-get install dict-jargon`); it is
skipped (with a note in the JSON) when absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jargon import JargonUnavailable, read_jargon, write_jsonl  # noqa: E402

from contextsort.config import Config  # noqa: E402
from contextsort.corpus import DocStore  # noqa: E402
from contextsort.runner import Runner  # noqa: E402

VARIANTS = {
    "dense": dict(similarity="dense"),
    "lexical": dict(similarity="lexical"),
    "hybrid": dict(similarity="hybrid"),  # the default weight (config.py)
}
EXTRA = {
    "lexical_bm25": dict(similarity="lexical", lexical="bm25"),
    "hybrid_w0.3": dict(similarity="hybrid", hybrid_weight=0.3),
    "hybrid_w0.5": dict(similarity="hybrid", hybrid_weight=0.5),
    "hybrid_w0.7": dict(similarity="hybrid", hybrid_weight=0.7),
    "dense_tfidf_embedder": dict(similarity="dense", embedder="tfidf"),
}


def run_variant(inputs, work: Path, opts: dict) -> dict:
    cfg = Config()
    cfg.output.formats = ["jsonl"]
    for key, val in opts.items():
        if key == "embedder":
            cfg.embed.embedder = val
        else:
            setattr(cfg.similarity, key, val)
    t = time.perf_counter()
    res = Runner(inputs, work, cfg, quiet=True, overwrite=True).run()
    total = time.perf_counter() - t
    m, st = res.metrics, res.manifest["stages"]
    out = {
        "path_weight": {k: round(m["path_weight"][k], 4) for k in ("sum", "mean", "ratio")} | {"jumps": m["path_weight"]["jumps"]},
        "adjacent_similarity": round(m["adjacent_similarity"]["ordered"], 4),
        "duplicates": res.counts["duplicates"],
        "seconds": {"embed": st["embed"]["seconds"], "neighbors": st["neighbors"]["seconds"], "total": round(total, 2)},
    }
    if "label_agreement" in m:
        out["label_agreement"] = round(m["label_agreement"]["ordered"], 4)
        out["label_agreement_random"] = round(m["label_agreement"]["random"], 4)
    return out, res


def corpus_table(name: str, inputs, work: Path, variants: dict, link=None) -> dict:
    table = {}
    for vname, opts in variants.items():
        row, res = run_variant(inputs, work / vname, opts)
        if link is not None:
            store = DocStore(work / vname / "store")
            row["link_rate"] = round(link(store, res.order), 4)
        table[vname] = row
        print(f"[{name}] {vname}: {json.dumps(row)}", file=sys.stderr)
    return table


def recall_at_k(exact_ids: np.ndarray, approx_ids: np.ndarray) -> float:
    """Mean share of each document's exact neighbours that the approximate list also has."""
    return float(np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / max(1, (a >= 0).sum()) for a, b in zip(exact_ids, approx_ids)]))


def lexical_checks(texts: list[str], dense_ids=None, dense_sims=None) -> dict:
    """Recall@10 of the pruned lexical kNN vs exact; timings of both (second call, compiled)."""
    from contextsort import similarity as S

    x = S.lexical_vectors(texts)
    S.lexical_knn(x[:50], 5, method="pruned")  # compile
    t = time.perf_counter()
    e_ids, e_sims, _ = S.lexical_knn(x, 10, method="exact")
    t_exact = time.perf_counter() - t
    t = time.perf_counter()
    p_ids, _, info = S.lexical_knn(x, 10, method="pruned")
    t_pruned = time.perf_counter() - t
    rec = recall_at_k(e_ids, p_ids)
    return {"pruned_recall_at_10": round(float(rec), 4), "exact_seconds": round(t_exact, 3),
            "pruned_seconds": round(t_pruned, 3), "pruned": info}, (e_ids, e_sims)


def store_texts(run: Path) -> list[str]:
    store = DocStore(run / "store")
    return store.texts(0, len(store))


def dedup_compare(dense_run: Path, lex_ids, lex_sims) -> dict:
    """Removed sets: dense cosine >= 0.97 (the default) vs lexical cosine thresholds."""
    from contextsort.dedup import find_duplicates

    dense = np.load(dense_run / "dup_of.npy") >= 0
    out = {"dense_0.97": int(dense.sum())}
    for t in (0.95, 0.9, 0.8):
        lex = find_duplicates(lex_ids, lex_sims, t, None) >= 0
        inter, union = int((dense & lex).sum()), int((dense | lex).sum())
        out[f"lexical_{t}"] = {"removed": int(lex.sum()), "also_removed_by_dense": inter, "jaccard": round(inter / union, 3) if union else 1.0}
    return out


def synthetic_corpus(texts: list[str], n: int, seed: int = 0, per_doc: int = 10) -> list[str]:
    """n documents of `per_doc` random sentences drawn from real texts (real word statistics, any size)."""
    import re

    pool = [x for t in texts for x in re.split(r"(?<=[.!?])\s+", t) if len(x) > 20]
    rng = np.random.default_rng(seed)
    return [" ".join(pool[j] for j in rng.integers(0, len(pool), per_doc)) for _ in range(n)]


def scale_checks(texts: list[str], sizes: list[int]) -> list[dict]:
    """Exact vs pruned lexical kNN seconds and recall@10 on synthetic corpora of growing size."""
    from contextsort import similarity as S

    rows = []
    for n in sizes:
        docs = synthetic_corpus(texts, n)
        t = time.perf_counter()
        x = S.lexical_vectors(docs)
        t_vec = time.perf_counter() - t
        t = time.perf_counter()
        p_ids, _, _ = S.lexical_knn(x, 10, method="pruned")
        t_p = time.perf_counter() - t
        t = time.perf_counter()
        e_ids, _, _ = S.lexical_knn(x, 10, method="exact")
        t_e = time.perf_counter() - t
        rec = recall_at_k(e_ids, p_ids)
        rows.append({"documents": n, "vectors_seconds": round(t_vec, 2), "exact_seconds": round(t_e, 2),
                     "pruned_seconds": round(t_p, 2), "pruned_recall_at_10": round(float(rec), 4)})
        print(f"[scale] {json.dumps(rows[-1])}", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="only dense / lexical / hybrid (no weight sweep, no tfidf embedder)")
    ap.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    ap.add_argument("--scale", default="", help="comma-separated sizes of synthetic corpora (sentences of BBC + Jargon) for exact vs pruned lexical kNN, e.g. 5000,20000")
    a = ap.parse_args()
    logging.disable(logging.INFO)
    variants = dict(VARIANTS) if a.quick else {**VARIANTS, **EXTRA}
    from contextsort.sample import bbc_news_path

    report: dict = {"variants": variants, "corpora": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        # warm-up: numba compiles once, so timings below are of compiled code
        warm = work / "warm.jsonl"
        warm.write_text("".join(json.dumps({"id": i, "text": f"warm up text number {i} about topic {i % 3}"}) + "\n" for i in range(40)))
        for v in VARIANTS.values():
            run_variant([warm], work / "warm", v)

        bbc = bbc_news_path()
        table = corpus_table("bbc", [bbc], work / "bbc", variants)
        texts = store_texts(work / "bbc" / "dense")
        report["corpora"]["bbc"] = {"documents": len(texts), "table": table}
        checks, (l_ids, l_sims) = lexical_checks(texts)
        report["corpora"]["bbc"]["lexical_knn"] = checks
        report["corpora"]["bbc"]["dedup"] = dedup_compare(work / "bbc" / "dense", l_ids, l_sims)

        try:
            jar = read_jargon()
        except JargonUnavailable as e:
            report["corpora"]["jargon"] = {"skipped": str(e)}
        else:
            path = write_jsonl(jar, work / "jargon.jsonl")
            pos = {h: i for i, h in enumerate(jar.headwords)}

            def link(store: DocStore, order: np.ndarray) -> float:
                return jar.link_rate([pos[store.record(int(i))["id"]] for i in order])

            rng = np.random.default_rng(0)
            rand = float(np.mean([jar.link_rate(rng.permutation(len(jar.texts))) for _ in range(5)]))
            report["corpora"]["jargon"] = {
                "documents": len(jar.texts), "linked_pairs": len(jar.linked()), "link_rate_random": round(rand, 4),
                "table": corpus_table("jargon", [path], work / "jargon", variants, link=link),
            }
            checks, (l_ids, l_sims) = lexical_checks(store_texts(work / "jargon" / "dense"))
            report["corpora"]["jargon"]["lexical_knn"] = checks
            report["corpora"]["jargon"]["dedup"] = dedup_compare(work / "jargon" / "dense", l_ids, l_sims)
        if a.scale:
            pool = store_texts(work / "bbc" / "dense") + (store_texts(work / "jargon" / "dense") if (work / "jargon" / "dense").exists() else [])
            report["scale"] = scale_checks(pool, [int(v) for v in a.scale.split(",") if v.strip()])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
