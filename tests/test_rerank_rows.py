"""The dense kNN from a RowFile (explicit reads, slab-by-slab re-rank) equals the array path
bit for bit: same ids, same float32 similarities, same tie and repeat rules."""

import numpy as np
import pytest

from contextsort.neighbors import knn_graph, rerank_from_file, rerank_rows
from contextsort.rowfile import RowFile


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("d", [64, 256])
@pytest.mark.parametrize("slab_rows", [None, 1, 7, 1000, 5000])
def test_rerank_from_file_equals_rerank_rows(tmp_path, d, slab_rows):
    x = unit_rows(5000, d, seed=d)
    # exact ties: a few rows duplicated at other ids, so equal scores must go to the lower id
    x[4000:4050] = x[100:150]
    path = tmp_path / "emb.npy"
    np.save(path, x)
    rng = np.random.default_rng(1)
    q = x[:600].copy()
    cand = rng.integers(-1, len(x), (600, 64))
    cand[:, 10] = cand[:, 2]  # repeats of an id in a row: kept once
    cand[:, 20] = np.arange(600) % 50 + 100  # a row of the copied block ...
    cand[:, 21] = cand[:, 20] + 3900  # ... and its copy, same score, higher id
    want_s, want_i = rerank_rows(x, q, cand, 11)
    got_s, got_i = rerank_from_file(RowFile(path), q, cand, 11, slab_rows=slab_rows)
    assert np.array_equal(got_i, want_i)
    assert np.array_equal(got_s, want_s)
    # the ties are really there and resolved to the lower id
    both = (want_i == cand[:, 20:21]).any(axis=1) & (want_i == cand[:, 21:22]).any(axis=1)
    assert both.any()
    for r in np.flatnonzero(both):
        lo = list(want_i[r]).index(cand[r, 20])
        assert want_i[r, lo + 1] == cand[r, 21] and want_s[r, lo + 1] == want_s[r, lo]
    # no id twice in a row
    for r in range(len(want_i)):
        row = want_i[r][want_i[r] >= 0]
        assert len(set(row.tolist())) == len(row)


def test_knn_graph_rowfile_equals_array(tmp_path):
    x = unit_rows(6000, 32, seed=3)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    want_i, want_s, want_info = knn_graph(x, k=8, index="ivffs", nprobe=8)
    done = []
    got_i, got_s, got_info = knn_graph(RowFile(path), k=8, index="ivffs", nprobe=8, batch=1000, rerank_batch=2500,
                                       progress=done.append)
    assert np.array_equal(got_i, want_i)
    assert np.array_equal(got_s, want_s)
    assert got_info.params == want_info.params
    assert sum(done) == len(x)
    assert not (got_i == np.arange(len(x))[:, None]).any()  # self-matches removed
    # n_queries: the first rows only, all rows searchable
    part_i, part_s, _ = knn_graph(RowFile(path), k=8, index="ivffs", nprobe=8, n_queries=1234)
    assert np.array_equal(part_i, want_i[:1234]) and np.array_equal(part_s, want_s[:1234])


def test_knn_graph_rowfile_other_kinds_read_whole(tmp_path):
    x = unit_rows(500, 16, seed=4)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    want_i, want_s, _ = knn_graph(x, k=5, index="flat")
    got_i, got_s, _ = knn_graph(RowFile(path), k=5, index="flat")
    assert np.array_equal(got_i, want_i) and np.array_equal(got_s, want_s)


def test_neighbors_stage_reads_ivffs_rows_from_the_file(tmp_path, monkeypatch):
    """The stage hands ivffs a RowFile (the embeddings never mapped for the kNN) and its
    lists are those of the array path."""
    import contextsort
    from contextsort.config import Config
    from contextsort.sample import bbc_news_path
    from contextsort.stages import neighbors as stage

    seen = []
    real = stage.knn_graph

    def recording(emb, **kw):
        seen.append(type(emb))
        return real(emb, **kw)

    monkeypatch.setattr(stage, "knn_graph", recording)
    cfg = Config()
    cfg.knn.index = "ivffs"
    run = tmp_path / "run"
    contextsort.run([bbc_news_path()], run, cfg)
    assert seen == [RowFile]
    emb = np.load(run / "embeddings.npy")
    ids, sims, _ = real(emb, k=max(cfg.knn.k, stage.walk_neighbours(cfg)), index="ivffs", seed=1234 + cfg.seed,
                        nprobe=cfg.knn.nprobe)
    ids, sims = np.ascontiguousarray(ids[:, : cfg.knn.k]), np.ascontiguousarray(sims[:, : cfg.knn.k])
    stage.drop_invalid(ids, sims, np.load(run / "embed_valid.npy"))
    assert np.array_equal(np.load(run / "dedup_ids.npy"), ids)
    assert np.array_equal(np.load(run / "dedup_sims.npy"), sims)
