"""End-to-end documents/s against the raw tokenizer, on >= 30k chunks of real text.

The corpus: every BBC News article cut into 120-word windows every 24 words (real text,
about 31k documents; neighbouring windows overlap, so some are near-duplicates). The
baseline is HF `tokenizers` `encode_batch_fast` of the Llama-2 tokenizer on the same texts
(in memory, no special tokens). The pipeline is timed per stage, in this process:

- `ids` (default): ingest -> tokenize (token store) -> embed from ids -> dense kNN ->
  lexical from ids + hybrid -> dedup -> order -> write: the tokenize-once pipeline.
- `--old`: the same stages as before tokenize-once: embed from texts (wordllama tokenizes
  again), lexical from texts (scikit-learn HashingVectorizer); no tokenize stage.
- `--cli` (the headline): one default `contextsort run` subprocess, timed from outside
  (start-up, imports, numba cache loading and the report included), with its manifest's
  stage seconds. A small run first fills the numba cache, as any earlier run would. Also
  printed: recall@10 of the run's dense kNN against exact search on 2,000 sampled
  documents, the run's label_agreement, and the ratio without the report stage.
  Also CPU seconds: the raw tokenizer's, the whole run's (the child's), each stage's (from
  the manifest) and those besides the tokenize stage per document. The wall ratio depends on
  the core count (the tokenizer uses every core, several stages one); `--cpus N` pins the
  benchmark and the run to N CPUs to show it.

Prints JSON: both rates, their ratio, per-stage seconds, peak RSS. The tokenizer is timed
two or three times (before, right before the pipeline with --cli, after) and the fastest
counts, so a load swing on a shared machine counts against the pipeline. Quote ratios
measured in one run:

    PYTHONPATH=src python benchmarks/throughput.py [--old] [--cli [--cpus N]] [--stride 24] > throughput.json

Before/after comparisons run this script (one version) against two checkouts: in a checkout,
`PYTHONPATH=src python /path/to/benchmarks/throughput.py --cli` runs that checkout's code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build_corpus(path: Path, words: int = 120, stride: int = 24) -> int:
    """BBC articles as `words`-word windows every `stride` words; returns the document count."""
    from contextsort.sample import bbc_news_path

    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for f in sorted(bbc_news_path().rglob("*.txt")):
            w = f.read_text(encoding="utf-8", errors="replace").split()
            for s in range(0, max(1, len(w) - words // 2), stride):
                fh.write(json.dumps({"id": n, "label": f.parent.name, "text": " ".join(w[s : s + words])}) + "\n")
                n += 1
    return n


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


TOKENIZER_CPU: list[float] = []  # CPU seconds of each raw_tokenizer call, beside its wall seconds


def raw_tokenizer(texts: list[str]) -> float:
    from tokenizers import Tokenizer

    from contextsort.tokenizer import llama2_tokenizer_path

    tok = Tokenizer.from_file(str(llama2_tokenizer_path()))
    c, t = cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    tok.encode_batch_fast(texts, add_special_tokens=False)
    wall = time.perf_counter() - t
    TOKENIZER_CPU.append(cpu_seconds(resource.RUSAGE_SELF) - c)
    return wall


def warm_up(work: Path, old: bool) -> None:
    """Compile the numba kernels once (cached), so that the timed run measures compiled code."""
    path = work / "warm.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"warm up text {i} about topic {i % 3} and more"}) + "\n" for i in range(60)))
    run_stages(path, work / "warm", old=old)
    from contextsort.similarity import lexical_knn, lexical_vectors

    lexical_knn(lexical_vectors([f"word{i} word{i + 1} shared" for i in range(50)]), 5, method="pruned")  # the path above 10k


def run_stages(corpus: Path, run: Path, old: bool) -> dict:
    """The pipeline's stages as library calls; returns seconds per stage."""
    from contextsort.config import Config
    from contextsort.corpus import CorpusReader, DocStore, DocStoreWriter, Reject
    from contextsort.dedup import find_duplicates
    from contextsort.embed import get_embedder
    from contextsort.formats import write_ordered
    from contextsort.graph import graph_from_knn, restrict_knn
    from contextsort.neighbors import knn_graph
    from contextsort.order import compute_order
    from contextsort.pack import TokenStream, tokenize_store
    from contextsort.similarity import similarity_graph
    from contextsort.tokenizer import get_tokenizer

    if not old:  # (--old runs on a checkout from before tokenize-once too, which lacks these)
        from contextsort.similarity import lexical_vectors_from_ids
        from contextsort.tokens import content_spans

    cfg = Config()
    run.mkdir(parents=True, exist_ok=True)
    sec: dict[str, float] = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        sec[name] = round(time.perf_counter() - t, 3)
        return out

    def ingest():
        w = DocStoreWriter(run / "store")
        for item in CorpusReader([corpus]):
            if not isinstance(item, Reject):
                w.add(item)
        w.close()
        return DocStore(run / "store")

    store = timed("ingest", ingest)
    n = len(store)
    embedder = get_embedder(cfg.embed.embedder)
    tok = get_tokenizer("llama2")
    if old:
        def embed_texts():
            out = np.empty((n, embedder.dim), np.float32)
            for s in range(0, n, 512):
                out[s : s + 512] = embedder.encode(store.texts(s, min(n, s + 512)))
            return out

        emb = timed("embed", embed_texts)
    else:
        timed("tokenize", lambda: tokenize_store(store, tok, run / "tokens"))
        stream = TokenStream.open(run / "tokens")
        start, length = content_spans(stream)
        emb = timed("embed", lambda: embedder.encode_ids(stream.tokens, start, length))
    valid = np.linalg.norm(emb, axis=1) >= 0.5
    d_ids, d_sims, _ = timed("dense_knn", lambda: knn_graph(emb, k=cfg.knn.k, seed=1234))
    sim = cfg.similarity

    def hybrid():
        opts = dict(weighting=sim.lexical, weight=sim.hybrid_weight, lexical_method=sim.lexical_method, dense_knn=(d_ids, d_sims))
        if old:
            texts = (x for s in range(0, n, 4096) for x in store.texts(s, min(n, s + 4096)))
            return similarity_graph(sim.similarity, emb, texts, cfg.knn.k, **opts)
        lex = timed("lexical_vectors", lambda: lexical_vectors_from_ids(stream.tokens, start, length, tok, sim.lexical))
        return timed("lexical_knn_hybrid", lambda: similarity_graph(sim.similarity, emb, None, cfg.knn.k, lexical=lex, **opts))

    ids, sims, _ = timed("lexical_hybrid", hybrid)  # (ids mode: the sum of the two parts above)
    dup_of = timed("dedup", lambda: find_duplicates(d_ids, d_sims, cfg.dedup.threshold, store.text_hash, valid))

    def order():
        keep = (dup_of < 0) & valid
        kept = np.flatnonzero(keep)
        k_ids, k_sims = restrict_knn(ids, sims, dup_of, keep)
        return kept[compute_order(cfg.order.algorithm, graph_from_knn(k_ids, k_sims), seed=cfg.seed, knn_ids=k_ids)]

    perm = timed("order", order)
    timed("write", lambda: write_ordered(run, store, perm, cfg.output.formats, cfg.input.label_field, quiet=True))
    sec["documents"] = n
    sec["duplicates"] = int((dup_of >= 0).sum())
    return sec


def cli_run(corpus: Path, run: Path, *options: str) -> float:
    """Seconds of one `contextsort run` subprocess (default options unless given)."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "contextsort.cli", "run", str(corpus), "-o", str(run), "-q", *options],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "src")})
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"contextsort run failed ({p.returncode}): {p.stderr[-2000:]}")
    return wall


def run_cli(corpus: Path, run: Path, work: Path, before_run=None) -> dict:
    """One timed default run, after a small warm-up run; `before_run()` is called between them."""
    warm = work / "warm.jsonl"
    with open(corpus, encoding="utf-8") as src, open(warm, "w", encoding="utf-8") as dst:
        dst.writelines(line for _, line in zip(range(600), src))
    # fills the numba cache (a first run compiles: issue 16 item 5); "pruned" is the lexical
    # kNN that auto picks above 10k documents
    cli_run(warm, work / "warm_run", "--lexical-method", "pruned")
    if before_run is not None:
        before_run()
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    wall = cli_run(corpus, run)
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
    man = json.loads((run / "manifest.json").read_text())
    stages = man.get("stages", {})
    sec = {k: v.get("seconds") for k, v in stages.items() if isinstance(v, dict)}
    sec["cpu"] = {k: v.get("cpu_seconds") for k, v in stages.items() if isinstance(v, dict)}
    sec["cpu"]["whole_run"] = round(cpu, 3)
    nb = stages.get("neighbors", {})
    for part in ("dense_seconds", "similarity_seconds"):
        if part in nb:
            sec[f"neighbors_{part.removesuffix('_seconds')}"] = nb[part]
    staged = sum(v.get("seconds", 0) for v in stages.values() if isinstance(v, dict))
    sec["outside_stages"] = round(wall - staged, 3)  # start-up, imports, config, manifest, exit
    sec["wall"] = round(wall, 3)
    sec["documents"] = stages.get("ingest", {}).get("documents")
    sec["peak_rss_mb_child"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return sec


def knn_recall(run: Path, queries: int = 2000, seed: int = 0) -> dict:
    """recall@10 of the run's dense kNN (the dedup lists) against exact search, on sampled documents.

    `recall_at_10` counts ids; `recall_at_10_ties` counts a returned neighbour as found when its
    similarity reaches the exact 10th one (minus 1e-6). Overlapping windows give many equal
    similarities, and which of the tied ids a search returns is arbitrary: the id count moves
    with tie order (0.989-0.995 for the same quality), the tie-aware one does not.
    """
    import faiss

    emb = np.load(run / "embeddings.npy").astype(np.float32)
    name = "dedup_ids.npy" if (run / "dedup_ids.npy").exists() else "knn_ids.npy"
    got = np.load(run / name)
    got_sims = np.load(run / name.replace("_ids", "_sims"))
    k = got.shape[1]
    q = np.sort(np.random.default_rng(seed).choice(len(emb), min(queries, len(emb)), replace=False))
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    exact_sims, exact = index.search(emb[q], k + 1)
    hits = [len(set(e[e != i][:k]) & set(g[g >= 0])) for i, e, g in zip(q, exact, got[q])]
    kth = np.array([s[e != i][k - 1] for i, e, s in zip(q, exact, exact_sims)])
    tie_hits = int(np.sum((got_sims[q] >= kth[:, None] - 1e-6) & (got[q] >= 0)))
    return {"recall_at_10": round(float(np.sum(hits)) / (len(q) * k), 4),
            "recall_at_10_ties": round(tie_hits / (len(q) * k), 4), "queries": len(q)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--old", action="store_true", help="the stages as before tokenize-once (embed and lexical from text)")
    ap.add_argument("--cli", action="store_true", help="time one `contextsort run` subprocess instead of library calls")
    ap.add_argument("--stride", type=int, default=24, help="words between window starts (24: about 31k documents)")
    ap.add_argument("--work", default=None)
    ap.add_argument("--cpus", type=int, default=None,
                    help="pin this process and the run to the first N CPUs (the ratio depends on the core count)")
    a = ap.parse_args()
    if a.cpus:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: a.cpus])
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        corpus = work / "corpus.jsonl"
        n = build_corpus(corpus, stride=a.stride)
        texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
        if not a.cli:
            warm_up(work, a.old)
        quality = None
        raw = [raw_tokenizer(texts)]
        if a.cli:  # the load of a shared machine drifts: the tokenizer is also timed right before the run
            stages = run_cli(corpus, work / "run", work, before_run=lambda: raw.append(raw_tokenizer(texts)))
            total = stages["wall"]
            man = json.loads((work / "run" / "manifest.json").read_text())
            quality = {"knn": knn_recall(work / "run"), "label_agreement": man["metrics"].get("label_agreement"),
                       "counts": {k: man["counts"][k] for k in ("kept", "duplicates", "rejected", "adds_up")},
                       "index": man["stages"]["neighbors"].get("index"), "params": man["stages"]["neighbors"].get("params")}
        else:
            stages = run_stages(corpus, work / "run", a.old)
            total = sum(v for k, v in stages.items() if k not in ("documents", "duplicates", "lexical_vectors", "lexical_knn_hybrid"))
        raw.append(raw_tokenizer(texts))
    raw_s = min(raw)
    cpu_extra = {}
    if a.cli:  # CPU seconds: what the core count does not change (module doc)
        c = stages.pop("cpu")
        tok_cpu = TOKENIZER_CPU[raw.index(raw_s)]
        outside = c["whole_run"] - (c.get("tokenize") or 0.0)
        cpu_extra = {"tokenizer_cpu_seconds": round(tok_cpu, 3), "pipeline_cpu_seconds": c["whole_run"],
                     "cpu_ratio": round(tok_cpu / c["whole_run"], 3),
                     "cpu_seconds_besides_tokenize_stage": round(outside, 3),
                     "cpu_ms_per_doc_besides_tokenize_stage": round(1000 * outside / n, 4),
                     "cores_busy": round(c["whole_run"] / total, 2), "stage_cpu_seconds": c}
    out = {
        "cpus": len(os.sched_getaffinity(0)),
        "mode": "cli" if a.cli else ("old" if a.old else "ids"),
        "documents": n,
        "tokenizer_seconds": round(raw_s, 3),
        "tokenizer_seconds_each": [round(x, 3) for x in raw],
        "tokenizer_docs_per_s": round(n / raw_s, 1),
        "pipeline_seconds": round(total, 3),
        "pipeline_docs_per_s": round(n / total, 1),
        "ratio": round(raw_s / total, 3),
        **cpu_extra,
        **({"ratio_without_report": round(raw_s / (total - stages.get("report", 0)), 3), "quality": quality} if a.cli else {}),
        "stage_seconds": stages,
        "stage_vs_tokenizer": {k: round(v / raw_s, 3) for k, v in stages.items()
                               if isinstance(v, (int, float)) and k not in ("documents", "duplicates", "peak_rss_mb_child")},
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
