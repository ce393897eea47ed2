"""Lexical and hybrid similarity computed per partition (own + spill documents), as Ray runs them.

The partition tasks are the same functions under every engine, so these run them in
this process (local engine, --partitions > 1); test_cluster.py runs them on two Ray nodes.
"""

from __future__ import annotations

import numpy as np
import pytest

from contextsort.corpus import DocStore
from contextsort.distributed.partition import PartitionParams, make_partitions, partitioned_graphs
from contextsort.metrics import label_agreement


def test_spill_over_every_partition_gives_the_global_lexical_graph(bbc_run):
    """With every partition searching all others, each task sees the whole corpus: its
    lexical graph (IDF included) must be the single-machine one."""
    from contextsort.pack import TokenStream
    from contextsort.similarity import lexical_vectors_from_ids, similarity_graph
    from contextsort.tokenizer import get_tokenizer
    from contextsort.tokens import content_spans

    run = bbc_run.run_dir
    emb = np.load(run / "embeddings.npy")
    valid = np.load(run / "embed_valid.npy")
    assert valid.all()
    store = DocStore(run / "store")
    parts = make_partitions(emb, valid, 3, seed=0)
    params = PartitionParams(k=10, spill=2, similarity="lexical", lexical_method="exact", tokens_dir=str(run / "tokens"))
    _, _, t_ids, t_sims, info = partitioned_graphs(emb, valid, parts, params)
    stream = TokenStream.open(run / "tokens")
    lex = lexical_vectors_from_ids(stream.tokens, *content_spans(stream), get_tokenizer("llama2"))
    g_ids, g_sims, _ = similarity_graph("lexical", emb, None, 10, lexical_method="exact", lexical=lex)
    assert len(store) == len(emb)
    assert info["partitions"] == 3 and [p["similarity"] for p in info["signal_params"]] == ["lexical"] * 3
    assert np.allclose(t_sims, g_sims, atol=1e-5)
    same = (t_ids == g_ids).all(axis=1).mean()  # rows can differ only where two neighbours tie
    assert same > 0.99, same


def test_spill_zero_searches_only_the_own_partition(bbc_run):
    run = bbc_run.run_dir
    emb = np.load(run / "embeddings.npy")
    valid = np.load(run / "embed_valid.npy")
    parts = make_partitions(emb, valid, 4, seed=0)
    params = PartitionParams(k=10, spill=0, similarity="hybrid", tokens_dir=str(run / "tokens"))
    ids, _, t_ids, _, _ = partitioned_graphs(emb, valid, parts, params)
    own = parts.assign[:, None]
    for graph in (ids, t_ids):
        linked = graph >= 0
        assert linked.any(axis=1).all()
        assert (parts.assign[graph[linked]] == np.broadcast_to(own, graph.shape)[linked]).all()


@pytest.mark.parametrize("similarity", ["hybrid", "lexical"])
def test_partitioned_run_keeps_the_signal_and_its_quality(tmp_path, bbc_path, bbc_run, similarity):
    """A partitioned run records the signal it used (per partition too) and keeps label
    agreement within 5% of the single-machine run with the same signal."""
    import contextsort

    single = bbc_run if similarity == "hybrid" else contextsort.run([bbc_path], tmp_path / "single", similarity=similarity)
    assert single.manifest["stages"]["neighbors"]["similarity"] == similarity
    res = contextsort.run([bbc_path], tmp_path / "parts", similarity=similarity, partitions=4)
    st = res.manifest["stages"]["neighbors"]
    assert st["similarity"] == similarity and st["partitions"] == 4
    assert [p["similarity"] for p in st["similarity_params"]["per_partition"]] == [similarity] * 4
    run = res.run_dir
    # the traversal graph is the requested signal's, not the dense kNN kept for dedup
    assert not np.array_equal(np.load(run / "knn_ids.npy"), np.load(run / "dedup_ids.npy"))
    keep = np.load(run / "embed_valid.npy") & (np.load(run / "dup_of.npy") < 0)
    assert np.array_equal(np.sort(res.order), np.flatnonzero(keep)) and res.counts["adds_up"]
    labels = DocStore(run / "store").labels
    la = label_agreement(labels, res.order)["ordered"]
    la_single = label_agreement(DocStore(single.run_dir / "store").labels, single.order)["ordered"]
    assert la >= 0.95 * la_single, (la, la_single)


def test_walk_per_partition_beyond_the_global_walk_limit(tmp_path, bbc_path, bbc_run, monkeypatch):
    """Small partitioned runs walk the merged graph (the single-machine order on the same
    graph); above GLOBAL_WALK_MAX_DOCS each partition walks its own documents."""
    import contextsort
    from contextsort.distributed import partition

    res = contextsort.run([bbc_path], tmp_path / "global", partitions=3)
    assert res.manifest["stages"]["order"]["walk"] == "global"
    monkeypatch.setattr(partition, "GLOBAL_WALK_MAX_DOCS", 0)
    per = contextsort.run([bbc_path], tmp_path / "per", partitions=3)
    assert per.manifest["stages"]["order"]["walk"] == "per partition"
    # same graph, same kept documents; only the walk differs
    assert np.array_equal(np.load(tmp_path / "per" / "knn_ids.npy"), np.load(tmp_path / "global" / "knn_ids.npy"))
    assert np.array_equal(np.sort(per.order), np.sort(res.order)) and not np.array_equal(per.order, res.order)
    # each partition's documents are contiguous in the per-partition order
    assign = np.load(tmp_path / "per" / "partition_assign.npy")[per.order]
    assert (np.diff(assign) != 0).sum() == 2
