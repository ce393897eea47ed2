"""One small in-place sort for numba kernels.

numba's own `np.sort` / `ndarray.sort` is a generic implementation that takes 1-2 s of CPU to
compile per element type on a first run (docs/benchmarks.md "First run"); this one compiles in
a fraction of that and is as fast on the short rows the kernels sort (graph rows, a document's
term ids). Equal keys are equal values in every caller, so stability does not matter.
"""

from __future__ import annotations

import numba as nb
import numpy as np

INSERTION_RUN = 24  # parts this short are left to the final insertion pass


@nb.njit(cache=True)
def sort_inplace(keys):
    """Sort a 1-D array in place: quicksort (median of three, explicit stack, the smaller part
    first so the stack stays under log2(n) entries) down to short runs, then insertion sort."""
    n = len(keys)
    stack = np.empty(128, np.int64)
    top = 0
    lo, hi = 0, n - 1
    while True:
        while hi - lo > INSERTION_RUN:
            mid = (lo + hi) >> 1
            if keys[mid] < keys[lo]:
                keys[mid], keys[lo] = keys[lo], keys[mid]
            if keys[hi] < keys[lo]:
                keys[hi], keys[lo] = keys[lo], keys[hi]
            if keys[hi] < keys[mid]:
                keys[hi], keys[mid] = keys[mid], keys[hi]
            pivot = keys[mid]
            i, j = lo, hi
            while i <= j:
                while keys[i] < pivot:
                    i += 1
                while keys[j] > pivot:
                    j -= 1
                if i <= j:
                    keys[i], keys[j] = keys[j], keys[i]
                    i += 1
                    j -= 1
            if j - lo < hi - i:  # the larger part waits on the stack
                stack[top] = i
                stack[top + 1] = hi
                hi = j
            else:
                stack[top] = lo
                stack[top + 1] = j
                lo = i
            top += 2
        if top == 0:
            break
        top -= 2
        lo, hi = stack[top], stack[top + 1]
    for a in range(1, n):
        x = keys[a]
        b = a - 1
        while b >= 0 and keys[b] > x:
            keys[b + 1] = keys[b]
            b -= 1
        keys[b + 1] = x
