"""Rows read from a .npy file with explicit reads (rowfile.py) and the hybrid's dense dot
products computed slab by slab from them: the same values, bit for bit, as from the array."""

from __future__ import annotations

import numpy as np
import pytest

from contextsort import similarity as S
from contextsort.rowfile import ArrayRows, RowFile, row_source


@pytest.fixture()
def stored(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1000, 24)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(tmp_path / "emb.npy", x)
    return x, tmp_path / "emb.npy"


def test_read_slabs_and_take_give_the_arrays_rows(stored):
    x, path = stored
    rf = RowFile(path)
    assert rf.shape == x.shape and rf.dtype == x.dtype and len(rf) == 1000
    assert np.array_equal(rf.read(0, 1000), x) and np.array_equal(rf.read(333, 334), x[333:334])
    assert rf.read(5, 5).shape == (0, 24)
    seen = []
    for s, rows in rf.slabs(slab_rows=300):  # 300, 300, 300, 100: the last one partial
        assert np.array_equal(rows, x[s : s + len(rows)])
        seen.append((s, len(rows)))
    assert seen == [(0, 300), (300, 300), (600, 300), (900, 100)]
    rng = np.random.default_rng(0)
    dense = rng.integers(0, 1000, 5000)  # repeats, any order: slabs read whole
    sparse = np.array([999, 0, 17, 17, 512])  # a few rows: read one by one
    for ids in (dense, sparse, np.array([], dtype=np.int64)):
        for slab in (None, 64, 1):
            assert np.array_equal(rf.take(ids, slab_rows=slab), x[ids])
    assert np.array_equal(RowFile(path, rows=10).read(0, 10), x[:10]) and len(RowFile(path, rows=10)) == 10


def test_other_dtypes_and_bad_input(tmp_path, stored):
    x, path = stored
    np.save(tmp_path / "h.npy", x.astype(np.float16))
    h = RowFile(tmp_path / "h.npy")
    assert h.dtype == np.float16 and np.array_equal(h.take([3, 1]), x.astype(np.float16)[[3, 1]])
    np.save(tmp_path / "flat.npy", x.ravel())
    with pytest.raises(ValueError, match="flat.npy: a 2-D C-order"):
        RowFile(tmp_path / "flat.npy")
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    with pytest.raises(ValueError, match="Fortran"):
        RowFile(tmp_path / "f.npy")
    with pytest.raises(IndexError, match="emb.npy"):
        RowFile(path).take([1000])
    with pytest.raises(IndexError, match="emb.npy"):
        RowFile(path).read(990, 1001)
    cut = tmp_path / "cut.npy"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cut.npy: truncated"):
        RowFile(cut)


def test_row_source_wraps_arrays_only(stored):
    x, path = stored
    rf = RowFile(path)
    assert row_source(rf) is rf
    a = row_source(x)
    assert isinstance(a, ArrayRows) and np.array_equal(a.take([4, 2]), x[[4, 2]])
    assert [s for s, _ in a.slabs(400)] == [0, 400, 800]


def test_candidate_dots_from_the_file_equal_the_arrays_bit_for_bit(stored):
    x, path = stored
    rng = np.random.default_rng(1)
    cand = rng.integers(-1, 1000, size=(50, 7))  # -1: no candidate
    first = 600
    cand[3, 2], cand[4, 5], cand[5, 6] = 603, cand[4, 1], cand[5, 0]  # self and repeats: not computed (0)
    want = np.zeros(cand.shape)
    for i in range(50):
        for t in range(7):
            if cand[i, t] >= 0 and cand[i, t] != first + i and cand[i, t] not in cand[i, :t]:
                # float32 products summed in order in float64, as the rescoring's
                s = 0.0
                for d in range(x.shape[1]):
                    s += float(x[first + i, d] * x[cand[i, t], d])
                want[i, t] = s
    got_array = S.candidate_dots(x, cand, first)
    assert np.array_equal(got_array, want)
    for slab in (None, 128, 1):  # one slab, several, one row each
        assert np.array_equal(S.candidate_dots(RowFile(path), cand, first, slab_rows=slab), want)
    assert (want != 0).sum() > 300  # the check is not vacuous


def test_hybrid_graph_from_the_file_equals_the_arrays(stored, monkeypatch):
    """The hybrid read through a RowFile (several slabs, several blocks) gives the same graph."""
    x, path = stored
    texts = [" ".join(f"w{(i * 7 + j * 13) % 97}" for j in range(12)) + f" topic{i % 20}" for i in range(1000)]
    lex = S.lexical_vectors(texts)
    from contextsort.neighbors import knn_graph

    dense = knn_graph(x, 10, index="flat")[:2]
    lexical = S.lexical_knn(lex, 10, method="pruned")[:2]
    want = S.hybrid_knn(x, lex, 10, 0.3, dense, lexical)
    monkeypatch.setattr(S, "SLAB_BYTES", 150 * 24 * 4)  # 150-row slabs
    monkeypatch.setattr(S, "LEXICAL_BLOCK", 256)
    got = S.hybrid_knn(RowFile(path), lex, 10, 0.3, dense, lexical)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and got[2] == want[2]
    monkeypatch.setattr(S, "LEXICAL_BLOCK", 1)
    monkeypatch.setattr(S, "HYBRID_PASSES", 3)  # blocks of n / 3 rows: three passes over the file
    got = S.hybrid_knn(RowFile(path), lex, 10, 0.3, dense, lexical)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert not np.array_equal(want[0], dense[0])  # the lexical signal changed the lists
