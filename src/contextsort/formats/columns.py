"""Arrow tables from rows of JSON values, built from numpy buffers for the flat column types.

pyarrow's Python converter (`pa.array`, `Table.from_pylist`) imports pandas the first time it
runs, only to ask whether a value is a pandas object: 0.3-0.5 s of a run's fixed cost for a
write stage that converts plain JSON values. The ordered outputs' columns are mostly flat
(int64, float64, bool, string, null, as the schema policy decides from the values' kinds), so
those are built here directly. Any other type, or a value the fast path cannot take exactly as
`from_pylist` would (a bool in an int64 column, an integer a double cannot hold exactly, a
string that is not valid Unicode, more than 2 GiB of text in one batch), falls back to
`Table.from_pylist`, which then converts or fails exactly as before.
"""

from __future__ import annotations

import numpy as np

EXACT_IN_DOUBLE = 2**53  # larger integers: from_pylist refuses to convert them to float64
MAX_STRING_BYTES = 2**31 - 1  # int32 offsets of an Arrow string array


def table_from_rows(rows: list[dict], schema):
    """The table `pa.Table.from_pylist(rows, schema=schema)` gives, without the Python converter
    where every column is flat (a missing key is a null; keys outside the schema are ignored)."""
    import pyarrow as pa

    arrays = []
    for f in schema:
        arr = flat_array([r.get(f.name) for r in rows], f.type)
        if arr is None:
            return pa.Table.from_pylist(rows, schema=schema)
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)


def flat_array(values: list, arrow_type):
    """An Arrow array of `values` (JSON scalars or None) of a flat type, or None (not flat, or not exact)."""
    import pyarrow as pa

    n = len(values)
    present = [v for v in values if v is not None]
    nulls = n - len(present)
    if pa.types.is_null(arrow_type):
        return pa.nulls(n) if not present else None
    kinds = {type(v) for v in present}
    valid = None
    if nulls:
        valid = pa.py_buffer(np.packbits(np.fromiter((v is not None for v in values), dtype=bool, count=n),
                                         bitorder="little"))
    if arrow_type == pa.int64():
        if not kinds <= {int}:
            return None
        try:
            data = np.array([0 if v is None else v for v in values], dtype=np.int64)
        except OverflowError:
            return None
        return pa.Array.from_buffers(arrow_type, n, [valid, pa.py_buffer(data)], null_count=nulls)
    if arrow_type == pa.float64():
        if not kinds <= {int, float} or any(type(v) is int and abs(v) > EXACT_IN_DOUBLE for v in present):
            return None
        data = np.array([0.0 if v is None else float(v) for v in values], dtype=np.float64)
        return pa.Array.from_buffers(arrow_type, n, [valid, pa.py_buffer(data)], null_count=nulls)
    if arrow_type == pa.bool_():
        if not kinds <= {bool}:
            return None
        bits = np.packbits(np.array([v is True for v in values], dtype=bool), bitorder="little")
        return pa.Array.from_buffers(arrow_type, n, [valid, pa.py_buffer(bits)], null_count=nulls)
    if arrow_type == pa.string():
        if not kinds <= {str}:
            return None
        try:
            encoded = [b"" if v is None else v.encode("utf-8") for v in values]
        except UnicodeEncodeError:  # a lone surrogate: from_pylist reports it
            return None
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=n)
        if lengths.sum() > MAX_STRING_BYTES:
            return None
        offsets = np.zeros(n + 1, dtype=np.int32)
        offsets[1:] = np.cumsum(lengths)
        return pa.Array.from_buffers(arrow_type, n, [valid, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))],
                                     null_count=nulls)
    return None
