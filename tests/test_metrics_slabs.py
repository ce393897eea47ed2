"""adjacent_similarities_in_slabs: the same floats as adjacent_similarities (bit for bit),
whatever the slab size, read from a memory-mapped .npy opened afresh per slab pair."""

from __future__ import annotations

import numpy as np
import pytest

from contextsort.metrics import adjacent_similarities, adjacent_similarities_in_slabs


@pytest.mark.parametrize("slab_rows", [1, 3, 7, 64, 10_000])
def test_slabs_give_the_same_floats(tmp_path, slab_rows):
    rng = np.random.default_rng(slab_rows)
    emb = rng.standard_normal((200, 16)).astype(np.float32)
    path = tmp_path / "embeddings.npy"
    np.save(path, emb)
    opened = []

    def open_embeddings():
        opened.append(1)
        return np.load(path, mmap_mode="r")

    for order in (rng.permutation(200), rng.permutation(200)[:57], np.arange(200)[::-1]):
        want = adjacent_similarities(emb, order)
        got = adjacent_similarities_in_slabs(open_embeddings, order, slab_bytes=slab_rows * 16 * 4)
        assert got.dtype == np.float64 and got.shape == (len(order) - 1,)
        assert np.array_equal(got, want)  # bit for bit: the same sums in the same order
    if slab_rows == 1:
        assert len(opened) > 100  # one mapping per pair of one-row slabs met


def test_short_orders():
    emb = np.ones((3, 4), np.float32)
    assert len(adjacent_similarities_in_slabs(lambda: emb, np.array([1]))) == 0
    assert len(adjacent_similarities_in_slabs(lambda: emb, np.array([], np.int64))) == 0
    assert adjacent_similarities_in_slabs(lambda: emb, np.array([2, 0])).tolist() == [4.0]
