"""Rows of a large on-disk array (the embeddings) read with explicit reads, not a memory map.

Pages of a memory map that a process has touched count in its resident set size: reading a
1 GB embeddings file at random (the hybrid rescoring, the report's cosines along the order)
makes all of it resident. Rows copied with read() into buffers the process owns leave
the file in the kernel's page cache, which is shared, reclaimable and not part of the RSS
(docs/benchmarks.md, "Memory at 1M"). Two ways to read:

- `RowFile.slabs`: consecutive ranges of rows into one reused buffer (a pass over the file
  costs about 0.2 s per GB from the page cache); for reads that hit every part of the file.
- `RowFile.take`: rows at given ids, gathered in ascending file order: the slabs holding many
  of them are read whole, a few rows of a slab one by one.

`row_source` gives the same interface over an in-memory array, so callers take either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np

SLAB_BYTES = 16 << 20  # bytes of rows read at once by `RowFile.slabs` and `RowFile.take`
SPARSE = 64  # `take` reads a slab row by row when it needs fewer than 1/SPARSE of its rows


class RowFile:
    """A 2-D C-order .npy file whose rows are read into buffers of the caller's process.

    `rows`: use only the first `rows` rows (default all). The file is opened per read, so
    the object pickles and holds no descriptor between calls.
    """

    def __init__(self, path: str | Path, rows: int | None = None):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"{self.path}: .npy format version {version} is not read here (1.0 and 2.0 are)")
            self.offset = fh.tell()
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise ValueError(f"{self.path}: a 2-D C-order numeric array is needed, found shape {shape}"
                             f"{' (Fortran order)' if fortran else ''} dtype {dtype}")
        self.dtype = dtype
        self.shape = (int(shape[0]) if rows is None else min(int(rows), int(shape[0])), int(shape[1]))
        self.row_bytes = int(shape[1]) * dtype.itemsize
        size = self.path.stat().st_size
        if self.offset + int(shape[0]) * self.row_bytes > size:
            raise ValueError(f"{self.path}: truncated ({size} bytes, header says {shape[0]} rows of {self.row_bytes} bytes)")

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, first: int, last: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows first..last-1 (into `out`'s leading rows when given)."""
        m = max(0, last - first)
        out = np.empty((m, self.shape[1]), self.dtype) if out is None else out[:m]
        if m:
            if not 0 <= first <= last <= self.shape[0]:
                raise IndexError(f"rows {first}..{last} of {self.path} ({self.shape[0]} rows)")
            with open(self.path, "rb", buffering=0) as fh:
                self.read_into(fh, first, m, out)
        return out

    def read_into(self, fh, first: int, count: int, out: np.ndarray) -> None:
        """`count` rows from `first` through the open unbuffered file `fh` into C-contiguous `out`."""
        fh.seek(self.offset + first * self.row_bytes)
        view, done, want = memoryview(out).cast("B"), 0, count * self.row_bytes
        while done < want:  # a read may return less than asked
            got = fh.readinto(view[done:want])
            if not got:
                raise OSError(f"{self.path}: short read at row {first + done // self.row_bytes}")
            done += got

    def slabs(self, slab_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) of consecutive slabs covering the file, all read into one buffer:
        each slab is valid until the next one is read."""
        n = self.shape[0]
        step = max(1, slab_rows or SLAB_BYTES // max(1, self.row_bytes))
        buf = np.empty((min(step, max(n, 1)), self.shape[1]), self.dtype)
        for s in range(0, n, step):
            yield s, self.read(s, min(n, s + step), buf)

    def take(self, ids: np.ndarray, slab_rows: int | None = None) -> np.ndarray:
        """Rows at `ids` (any order, repeats allowed), as a new [len(ids), dim] array. Ids are
        visited in file order, slab by slab; a slab holding fewer than 1/SPARSE of its rows
        is read row by row (a small sample does not read the whole file)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        out = np.empty((len(ids), self.shape[1]), self.dtype)
        if len(ids) == 0:
            return out
        if ids.min() < 0 or ids.max() >= self.shape[0]:
            raise IndexError(f"row ids outside 0..{self.shape[0] - 1} of {self.path}")
        dest = np.argsort(ids, kind="stable")
        rows = ids[dest]
        step = max(1, slab_rows or SLAB_BYTES // max(1, self.row_bytes))
        buf = None
        with open(self.path, "rb", buffering=0) as fh:
            for s in range(int(rows[0]) // step * step, int(rows[-1]) + 1, step):
                a, b = np.searchsorted(rows, [s, s + step])
                if a == b:
                    continue
                if (b - a) * SPARSE < step:
                    for q in range(a, b):  # a few rows: one read each
                        self.read_into(fh, int(rows[q]), 1, out[dest[q]])
                    continue
                e = min(self.shape[0], s + step, int(rows[b - 1]) + 1)
                if buf is None:
                    buf = np.empty((step, self.shape[1]), self.dtype)
                self.read_into(fh, s, e - s, buf)
                out[dest[a:b]] = buf[rows[a:b] - s]
        return out


class ArrayRows:
    """The `RowFile` interface over an array already in memory (reads are views or copies)."""

    def __init__(self, array: np.ndarray):
        self.array = np.asarray(array)
        self.shape, self.dtype = self.array.shape, self.array.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, first: int, last: int, out: np.ndarray | None = None) -> np.ndarray:
        return self.array[first:last]

    def slabs(self, slab_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        n = self.shape[0]
        step = max(1, slab_rows or n)
        for s in range(0, n, step):
            yield s, self.array[s : s + step]

    def take(self, ids: np.ndarray) -> np.ndarray:
        return self.array[np.asarray(ids, dtype=np.int64)]


def row_source(x) -> RowFile | ArrayRows:
    """`x` itself when it is a RowFile / ArrayRows, else ArrayRows over the array."""
    return x if isinstance(x, (RowFile, ArrayRows)) else ArrayRows(x)


def for_each_slab(rows: RowFile | ArrayRows, slab_rows: int, busy: np.ndarray, threads: int,
                  visit: Callable[[int, int, np.ndarray], None]) -> None:
    """Call `visit(s, first_row, slab)` for every slab s of `slab_rows` rows with `busy[s]`,
    each slab read once (from a RowFile into a buffer of the reading thread). The slabs are
    shared among `threads` threads, so `visit` should do its work without the GIL (a nogil
    numba kernel) and write outputs no other slab writes. Threads, not a numba parallel loop
    per slab: on a loaded machine every parallel region waits for all its threads, ~10 ms
    each, and there are ~1,000 slabs at 1M documents."""
    n = len(rows)
    n_slabs = len(busy)

    def work(mine: range) -> None:
        buf = None
        for s in mine:
            if busy[s]:
                first = s * slab_rows
                if buf is None and isinstance(rows, RowFile):
                    buf = np.empty((min(slab_rows, n), rows.shape[1]), rows.dtype)
                visit(s, first, rows.read(first, min(n, first + slab_rows), buf))

    threads = max(1, min(threads, n_slabs))
    if threads == 1:
        work(range(n_slabs))
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, [range(t, n_slabs, threads) for t in range(threads)]))
