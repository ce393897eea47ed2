"""Rows of a numba kernel over Python threads.

A `parallel=True` numba function costs about half a second more to compile than the same loop
compiled `nogil=True` (the parfor passes; docs/benchmarks.md "First run"), and every kernel
wrapped so pays it on a person's first run. A kernel that takes a row range and releases the
GIL runs on `nb.get_num_threads()` Python threads instead: the same rows, the same results.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numba as nb

CHUNKS_PER_THREAD = 4  # uneven rows (long documents) still spread over the threads


def over_row_ranges(kernel: Callable, n: int, *args) -> None:
    """Call `kernel(r0, r1, *args)` for consecutive ranges covering rows 0..n-1, on numba's
    thread count of threads; `kernel` is `@nb.njit(nogil=True)` and writes only its rows."""
    threads = nb.get_num_threads()
    n_chunks = max(1, min(n, CHUNKS_PER_THREAD * threads))
    step = -(-n // n_chunks) if n else 1
    ranges = [(r0, min(n, r0 + step)) for r0 in range(0, n, step)]
    if threads == 1 or len(ranges) <= 1:
        for r0, r1 in ranges:
            kernel(r0, r1, *args)
        return
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda r: kernel(r[0], r[1], *args), ranges):
            pass
