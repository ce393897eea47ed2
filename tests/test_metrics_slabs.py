"""adjacent_similarities_along: the same floats as adjacent_similarities over the whole array
(bit for bit), whatever the chunk and the RowFile's slab size, read from the .npy file."""

from __future__ import annotations

import numpy as np
import pytest

import contextsort.rowfile as rowfile
from contextsort.metrics import adjacent_similarities, adjacent_similarities_along
from contextsort.rowfile import ArrayRows, RowFile


@pytest.mark.parametrize("chunk,slab_rows", [(1, 1), (3, 7), (64, 5), (10_000, 64), (57, 10_000)])
def test_chunks_give_the_same_floats(tmp_path, monkeypatch, chunk, slab_rows):
    rng = np.random.default_rng(chunk)
    emb = rng.standard_normal((200, 16)).astype(np.float32)
    path = tmp_path / "embeddings.npy"
    np.save(path, emb)
    monkeypatch.setattr(rowfile, "SLAB_BYTES", slab_rows * 16 * 4)
    rows = RowFile(path)
    for order in (rng.permutation(200), rng.permutation(200)[:57], np.arange(200)[::-1]):
        want = adjacent_similarities(emb, order)
        got = adjacent_similarities_along(rows, order, chunk=chunk)
        assert got.dtype == np.float64 and got.shape == (len(order) - 1,)
        assert np.array_equal(got, want)  # bit for bit: the same sums in the same order


def test_float16_rows_are_read_as_float32(tmp_path):
    emb = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float16)
    np.save(tmp_path / "e.npy", emb)
    order = np.random.default_rng(1).permutation(50)
    want = adjacent_similarities(emb.astype(np.float32), order)
    assert np.array_equal(adjacent_similarities_along(RowFile(tmp_path / "e.npy"), order, chunk=7), want)


def test_short_orders():
    rows = ArrayRows(np.ones((3, 4), np.float32))
    assert len(adjacent_similarities_along(rows, np.array([1]))) == 0
    assert len(adjacent_similarities_along(rows, np.array([], np.int64))) == 0
    assert adjacent_similarities_along(rows, np.array([2, 0])).tolist() == [4.0]
