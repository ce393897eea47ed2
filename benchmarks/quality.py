"""Order quality on corpora with ground truth: one JSON table over corpus x similarity x order.

Runs the library stages in-process (embed, knn, dedup, similarity_graph / hybrid_knn,
graph_from_knn, compute_order, pack.plan_contexts), not the runner. Per row:

- label_agreement: share of consecutive documents with the same label (corpora with labels);
- link_rate: share of consecutive documents where one cross-references the other (corpora with links);
- path_weight (sum over the traversal graph, jumps = 0) and its ratio to path_bound;
- context coherence, for `concat` and `boundary` packing into L-token contexts: over every
  pair of documents that share a context, the mean dense cosine, label agreement, link rate;
- seconds of the order stage (median of --repeats, compiled code).

Corpora come from benchmarks/corpora.py (built on first use). Settings are written
`similarity[:weight]/k_walk/order[:candidates[:or_opt]]`, e.g. `hybrid:0.2/10/improved:3:0`
(today's `improved`: 3 candidates, no Or-opt pass).

    PYTHONPATH=src python benchmarks/quality.py > quality.json
    PYTHONPATH=src python benchmarks/quality.py --corpora bbc,autoconf,jargon,as,bash,find --grid \
        --no-contexts --repeats 1 > grid.json                                          # choose settings
    PYTHONPATH=src python benchmarks/quality.py --summarize grid.json                 # relative gains
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpora as C  # noqa: E402

from contextsort.dedup import DEFAULT_THRESHOLD, find_duplicates  # noqa: E402
from contextsort.embed import get_embedder  # noqa: E402
from contextsort.graph import graph_from_knn, restrict_knn  # noqa: E402
from contextsort.metrics import adjacent_similarities, path_bound, path_bound_two_best, path_edge_weights  # noqa: E402
from contextsort.neighbors import knn_graph  # noqa: E402
from contextsort.order import compute_order  # noqa: E402
from contextsort.pack import context_docs, plan_contexts  # noqa: E402
from contextsort.similarity import hybrid_knn, lexical_knn, lexical_vectors  # noqa: E402

# Split fixed before any result on the new corpora was seen (docs/quality.md says why):
# the corpora already looked at (bbc, autoconf; jargon, as, bash were spent as report corpora
# by the previous round) choose settings, with find; five fresh manuals only report.
SELECT = ["bbc", "autoconf", "jargon", "as", "bash", "find"]
REPORT = ["coreutils", "screen", "diffutils", "m4", "ld"]
TABLE = [  # the paper, the signals, the old `improved`, today's default, the round-2 candidates
    "dense/10/paper", "dense/10/improved:3:3", "lexical/10/paper", "lexical/10/improved:3:3",
    "hybrid:0.2/10/random", "hybrid:0.2/10/paper", "hybrid:0.2/10/edge", "hybrid:0.2/10/improved:3:0",
    "hybrid:0.2/10/improved:3:3", "hybrid:0.1/10/improved:3:3", "hybrid:0.1/16/improved:3:3",
    "hybrid:0.2/16/improved:3:3", "hybrid:0.5/24/improved:3:3",
]
BASELINE = "hybrid:0.2/10/improved:3:0"  # the old `--order improved` (before Or-opt) with the default signal
ROUND1_DEFAULT = "hybrid:0.2/10/improved:3:3"  # round 1's default: `improved` with Or-opt, hybrid weight 0.2, k 10
DEFAULT = "hybrid:0.1/16/improved:3:3"  # round 2: best on the select half, kept by the rule on the report half
CANDIDATES = [DEFAULT, "hybrid:0.1/10/improved:3:3", ROUND1_DEFAULT, "hybrid:0.5/24/improved:3:3", "hybrid:0.2/10/paper"]
GRID = [BASELINE] + [f"hybrid:{w}/{k}/improved:3:3" for w in (0.1, 0.2, 0.35, 0.5) for k in (10, 16, 24)] + [
    "hybrid:0.05/16/improved:3:3", "hybrid:0.15/16/improved:3:3", "hybrid:0.25/16/improved:3:3",
    "hybrid:0.1/12/improved:3:3", "hybrid:0.1/20/improved:3:3", "lexical/16/improved:3:3",
    "hybrid:0.1/16/improved:3:0", "hybrid:0.1/16/improved:8:6"]


class Prepared:
    """One corpus embedded, searched (dense and lexical, k_max each) and deduplicated (k = 10)."""

    def __init__(self, name: str, records: list[dict], embedder: str, k_max: int, threshold: float):
        self.name = name
        self.texts = [r["text"] for r in records]
        n = len(records)
        labels = [r["label"] for r in records]
        self.has_labels = any(lab is not None for lab in labels)
        _, self.labels = np.unique(np.asarray([str(x) for x in labels]), return_inverse=True)
        pos = {r["id"]: i for i, r in enumerate(records)}
        self.links = {(min(i, pos[t]), max(i, pos[t])) for i, r in enumerate(records) for t in r["links"] if t in pos}
        self.emb = get_embedder(embedder).encode(self.texts)
        self.d_ids, self.d_sims, _ = knn_graph(self.emb, k=k_max)
        hashes = np.asarray([int.from_bytes(hashlib.blake2b(" ".join(t.split()).lower().encode(), digest_size=8).digest(), "little")
                             for t in self.texts], dtype=np.uint64)
        self.dup_of = find_duplicates(self.d_ids[:, :10], self.d_sims[:, :10], threshold, hashes)
        self.kept = np.flatnonzero(self.dup_of < 0)
        self.x = lexical_vectors(self.texts)
        self.l_ids, self.l_sims, _ = lexical_knn(self.x, k_max)
        from contextsort.tokenizer import get_tokenizer

        _, lengths = get_tokenizer("llama2").encode_batch(self.texts)
        self.seq_len = np.asarray(lengths, np.int64) + 1  # + EOS
        self.n = n

    def graph(self, similarity: str, weight: float, k: int):
        """Traversal graph of the kept documents (renumbered), and its kNN ids."""
        if similarity == "dense":
            ids, sims = self.d_ids[:, :k], self.d_sims[:, :k]
        elif similarity == "lexical":
            ids, sims = self.l_ids[:, :k], self.l_sims[:, :k]
        else:
            ids, sims, _ = hybrid_knn(self.emb, self.x, k, weight, (self.d_ids[:, :k], self.d_sims[:, :k]),
                                      (self.l_ids[:, :k], self.l_sims[:, :k]))
        k_ids, k_sims = restrict_knn(ids, sims, self.dup_of)
        return graph_from_knn(k_ids, k_sims), k_ids


def neighbour_agreement(p: Prepared, k: int = 10) -> float:
    """Mean overlap of each document's dense and lexical top-k lists (an unsupervised criterion)."""
    d, l = p.d_ids[:, :k], p.l_ids[:, :k]
    return float(np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / k for a, b in zip(d, l)]))


def pair_stats(p: Prepared, doc_a: np.ndarray, doc_b: np.ndarray) -> dict:
    """Mean dense cosine, label agreement and link rate of document pairs (original indices)."""
    out = {"pairs": int(len(doc_a))}
    if len(doc_a) == 0:
        return out
    out["similarity"] = round(float(np.einsum("ij,ij->i", p.emb[doc_a], p.emb[doc_b]).mean()), 4)
    if p.has_labels:
        out["label_agreement"] = round(float(np.mean(p.labels[doc_a] == p.labels[doc_b])), 4)
    if p.links:
        lo, hi = np.minimum(doc_a, doc_b), np.maximum(doc_a, doc_b)
        out["link_rate"] = round(float(np.mean([(int(a), int(b)) in p.links for a, b in zip(lo, hi)])), 4)
    return out


def context_coherence(p: Prepared, order: np.ndarray, L: int, mode: str, max_pairs: int = 200_000) -> dict:
    """Pairs of documents that share a packed context (concat: cut every L tokens; boundary: the DP)."""
    seq = p.seq_len[order]
    links = adjacent_similarities(p.emb, order) if mode == "boundary" else None
    plan = plan_contexts(seq, L, mode, links)
    start = np.zeros(len(seq) + 1, np.int64)
    np.cumsum(seq, out=start[1:])
    cd = context_docs(start, plan)
    a, b = [], []
    for c in range(len(plan)):
        docs = np.unique(cd.doc[cd.ptr[c]:cd.ptr[c + 1]])
        if len(docs) > 1:
            i, j = np.triu_indices(len(docs), 1)
            a.append(order[docs[i]])
            b.append(order[docs[j]])
    a = np.concatenate(a) if a else np.zeros(0, np.int64)
    b = np.concatenate(b) if b else np.zeros(0, np.int64)
    if len(a) > max_pairs:
        pick = np.random.default_rng(0).choice(len(a), max_pairs, replace=False)
        a, b = a[pick], b[pick]
    return {"contexts": len(plan), **pair_stats(p, a, b)}


def parse_setting(s: str) -> tuple[str, str, int, str, dict]:
    sim, k, order = s.split("/")
    sim_name, _, w = sim.partition(":")
    name, *rest = order.split(":")
    opts = dict(zip(("candidates", "or_opt_segment"), map(int, rest)))
    return sim_name, w or "0.2", int(k), name, opts


def evaluate(p: Prepared, setting: str, L: int, repeats: int, contexts: bool = True) -> dict:
    sim, w, k, name, opts = parse_setting(setting)
    weight = float(w)
    t = time.perf_counter()
    graph, k_ids = p.graph(sim, weight, k)
    graph_seconds = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        local = compute_order(name, graph, seed=0, knn_ids=k_ids, emb=p.emb[p.kept], **opts)
        times.append(time.perf_counter() - t)
    assert np.array_equal(np.sort(local), np.arange(graph.n)), f"{setting}: not a permutation"
    order = p.kept[local]
    pw = path_edge_weights(graph, local)
    t = time.perf_counter()
    bound = path_bound(graph)
    bound_seconds = time.perf_counter() - t
    two_best = path_bound_two_best(graph)
    row = {"setting": setting, "weight": round(weight, 3), "seconds": round(float(np.median(times)), 5),
           "graph_seconds": round(graph_seconds, 3), "bound_seconds": round(bound_seconds, 3),
           "path_weight": round(float(pw.sum()), 2), "path_bound": round(bound, 2),
           "path_bound_two_best": round(two_best, 2),
           "path_ratio": round(float(pw.sum() / bound), 4) if bound else 0.0,
           "path_ratio_two_best": round(float(pw.sum() / two_best), 4) if two_best else 0.0,
           "jumps": int((pw == 0).sum())}
    adj = pair_stats(p, order[:-1], order[1:])
    row.update({k_: v for k_, v in adj.items() if k_ != "pairs"})
    row["adjacent_similarity"] = row.pop("similarity")
    if contexts:
        row["concat"] = context_coherence(p, order, L, "concat")
        row["boundary"] = context_coherence(p, order, L, "boundary")
    return row


def summarize(report: dict, baseline: str = BASELINE, candidate: str = DEFAULT) -> dict:
    """Relative change of label agreement and link rate, candidate vs baseline, per corpus and
    averaged (a corpus's figure is the mean of the measures it has) over each role."""
    per, by_role = {}, {"select": [], "report": []}
    for name, c in report["corpora"].items():
        rows = {r["setting"]: r for r in c["rows"]}
        if baseline not in rows or candidate not in rows:
            continue
        b, n = rows[baseline], rows[candidate]
        rel = {m: round(n[m] / b[m] - 1, 4) for m in ("label_agreement", "link_rate") if m in b and b[m]}
        rel["path_ratio"] = n["path_ratio"]
        per[name] = rel
        by_role[c["role"]].append(np.mean([v for m, v in rel.items() if m != "path_ratio"]))
    return {"baseline": baseline, "candidate": candidate, "per_corpus": per,
            **{f"mean_relative_gain_{r}": round(float(np.mean(v)), 4) for r, v in by_role.items() if v}}


def markdown(report: dict, settings: list[str] | None = None) -> str:
    """The JSON table (only `settings`' rows when given) as one markdown table (docs/quality.md)."""
    def f(row: dict, key: str) -> str:
        return f"{row[key]:.3f}" if key in row else "-"

    out = ["| corpus (role) | setting | label | link | path / bound (two-best) | concat: sim / label / link | boundary: sim / label / link | order s |",
           "|---|---|---|---|---|---|---|---|"]
    for name, c in report["corpora"].items():
        for r in c["rows"]:
            if settings and r["setting"] not in settings:
                continue
            cc, bb = r.get("concat", {}), r.get("boundary", {})
            out.append(f"| {name} ({c['role']}) | `{r['setting']}` | {f(r, 'label_agreement')} | {f(r, 'link_rate')} | "
                       f"{r['path_ratio']:.3f} ({f(r, 'path_ratio_two_best')}) | {f(cc, 'similarity')} / {f(cc, 'label_agreement')} / {f(cc, 'link_rate')} | "
                       f"{f(bb, 'similarity')} / {f(bb, 'label_agreement')} / {f(bb, 'link_rate')} | {r['seconds']:.4f} |")
    return "\n".join(out)


def warm_up(settings: list[str]) -> None:
    """Compile every order once (numba), so the seconds are of compiled code."""
    rng = np.random.default_rng(0)
    ids = np.stack([rng.permutation(60)[:5] for _ in range(60)]).astype(np.int64)
    graph = graph_from_knn(ids, rng.random(ids.shape).astype(np.float32))
    for s in settings:
        _, _, _, name, opts = parse_setting(s)
        compute_order(name, graph, seed=0, knn_ids=ids, emb=np.eye(60, 8, dtype=np.float32), **opts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=",".join(SELECT + REPORT))
    ap.add_argument("--settings", default=None, help="comma-separated settings (default: the table's)")
    ap.add_argument("--grid", action="store_true", help="the settings grid used to choose the defaults")
    ap.add_argument("--no-contexts", action="store_true", help="skip the packed-context coherence (faster grids)")
    ap.add_argument("--embedder", default="wordllama")
    ap.add_argument("--context-length", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=C.DEFAULT_CACHE)
    ap.add_argument("--summarize", type=Path, default=None, help="only print the summary of a saved JSON table")
    ap.add_argument("--markdown", type=Path, default=None, help="only print a saved JSON table as markdown")
    a = ap.parse_args()
    if a.markdown:
        print(markdown(json.loads(a.markdown.read_text()), a.settings.split(",") if a.settings else None))
        return
    if a.summarize:
        saved = json.loads(a.summarize.read_text())
        present = [r["setting"] for r in next(iter(saved["corpora"].values()))["rows"]]
        print(json.dumps([summarize(saved, BASELINE, c) for c in present if c != BASELINE], indent=2))
        return
    logging.disable(logging.INFO)
    settings = a.settings.split(",") if a.settings else (GRID if a.grid else TABLE)
    k_max = max(parse_setting(s)[2] for s in settings)
    warm_up(settings)
    report = {"embedder": a.embedder, "context_length": a.context_length, "dedup_threshold": DEFAULT_THRESHOLD,
              "select": SELECT, "report": REPORT, "corpora": {}}
    for name in a.corpora.split(","):
        p = Prepared(name, C.load(name, a.cache), a.embedder, k_max, DEFAULT_THRESHOLD)
        rows = []
        for s in settings:
            rows.append(evaluate(p, s, a.context_length, a.repeats, not a.no_contexts))
            print(f"[{name}] {json.dumps(rows[-1])}", file=sys.stderr)
        rng = np.random.default_rng(0)
        rand = [pair_stats(p, *(lambda o: (o[:-1], o[1:]))(rng.permutation(p.kept))) for _ in range(3)]
        report["corpora"][name] = {
            "role": "select" if name in SELECT else "report",
            "documents": p.n, "kept": int(len(p.kept)), "labels": int(p.labels.max() + 1) if p.has_labels else 0,
            "linked_pairs": len(p.links), "neighbour_agreement": round(neighbour_agreement(p), 4),
            "random": {k_: round(float(np.mean([r[k_] for r in rand])), 4) for k_ in rand[0] if k_ != "pairs"},
            "rows": rows,
        }
    report["summary"] = [summarize(report, BASELINE, c) for c in CANDIDATES]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
