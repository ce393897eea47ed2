"""sorting.sort_inplace equals numpy's sort: any length (around the insertion-run size too),
repeats, already sorted and reversed input, each key type the kernels sort."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contextsort.sorting import INSERTION_RUN, sort_inplace


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 2**63 - 1), max_size=300), st.sampled_from([np.int64, np.uint64]), st.integers(1, 2**40))
def test_sorts_like_numpy(values, dtype, spread):
    a = (np.array(values, dtype=np.uint64) % np.uint64(spread)).astype(dtype)  # small spreads: many repeats
    b = a.copy()
    sort_inplace(b)
    assert np.array_equal(b, np.sort(a))


@pytest.mark.parametrize("n", [0, 1, 2, INSERTION_RUN, INSERTION_RUN + 1, INSERTION_RUN + 2, 1000, 100_000])
@pytest.mark.parametrize("shape", ["random", "sorted", "reversed", "constant", "two values"])
def test_lengths_and_shapes(n, shape):
    rng = np.random.default_rng(n)
    a = {"random": rng.integers(-(2**40), 2**40, n), "sorted": np.arange(n), "reversed": np.arange(n)[::-1].copy(),
         "constant": np.full(n, 7), "two values": rng.integers(0, 2, n)}[shape].astype(np.int64)
    b = a.copy()
    sort_inplace(b)
    assert np.array_equal(b, np.sort(a))
