"""Columnar fast paths of ingest: a block of JSON lines read by `pyarrow.json`, a Parquet
record batch taken as Arrow columns, each turned into one `RecordBlock` for the store
writer, with no Python object per document: texts, ids and string columns stay in Arrow
buffers, hashed and JSON-escaped there by numba kernels (textkey.py, `json_escape`).

A fast path only says yes when its result is exactly what the line-by-line reader
(corpus.py) would store for the same input, and nothing would be rejected; otherwise it
returns None and the caller reads the block the ordinary way, so every reject rule holds.
The JSON-lines block must be plain: every line one JSON object starting with '{' and ending
with '}' (no blank line, no CR, no raw control byte), every line holding every field with
a non-null value of a flat type (string, integer within 2**53, bool); and the text
non-blank. pyarrow itself refuses duplicate keys, invalid UTF-8, raw control characters
in strings and lone surrogate escapes (tests/test_arrow_ingest.py checks each against the
ordinary reader). Numbers with a fraction or exponent, nested values, nulls and missing
fields take the ordinary path (their Python kinds cannot be read off an Arrow type).
Such a block stores its input lines as they are, as the ordinary reader does.

A Parquet batch is fast when its columns are strings (valid UTF-8), integers or bools,
the text column has no null and no blank value, and the id column has no null; the
records are then encoded as JSON column by column (`json_strings`: string columns escaped
by one numba kernel over their buffers), byte for byte what Python's
`json.dumps(..., ensure_ascii=False)` gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from .textkey import bytes_hashes, hash_utf8_blanks

INT53 = 1 << 53


@dataclass
class RecordBlock:
    """Consecutive accepted records as columns: what DocStoreWriter.add_block stores.

    `records` holds each record's JSON line, each ending in LF (`record_lengths` counts
    them, LF included); `text_data` the UTF-8 texts back to back (`text_offsets`, N+1,
    from 0); both bytes-like (bytes, or a view of an Arrow buffer); `labels` the distinct labels in order of first appearance and `label_index`
    each record's (-1: none); `kinds` the value kinds of each field, in field order.
    """

    source: str
    first_line: int  # line (JSON lines) or row (Parquet) number of the first record
    id_hash: np.ndarray  # of each id's JSON text (corpus.id_hash_keys)
    text_hash: np.ndarray
    text_data: bytes | memoryview
    text_offsets: np.ndarray
    records: bytes | memoryview
    record_lengths: np.ndarray
    labels: list
    label_index: np.ndarray
    kinds: dict

    def __len__(self) -> int:
        return len(self.text_hash)


def string_buffers(arr) -> tuple[memoryview, np.ndarray]:
    """The bytes of a (large_)string / (large_)binary Arrow array's values back to back, and offsets (N+1, from 0).

    The bytes are a view of the array's own buffer (no copy: it is written to the store as it is).
    """
    import pyarrow as pa

    _, offsets, data = arr.buffers()
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    off = np.frombuffer(offsets, dtype=np.int64 if large else np.int32)[arr.offset: arr.offset + len(arr) + 1].astype(np.int64)
    start, stop = int(off[0]), int(off[-1])
    body = memoryview(data.slice(start, stop - start)).cast("B") if data is not None and stop > start else memoryview(b"")
    return body, off - start


def valid_utf8(data: bytes) -> bool:
    """Is `data` valid UTF-8? (Arrow's validation, without making a Python string.)"""
    import pyarrow as pa

    if data.isascii():
        return True
    one = pa.Array.from_buffers(pa.large_binary(), 1, [None, pa.py_buffer(np.array([0, len(data)], dtype=np.int64)), pa.py_buffer(data)])
    try:
        one.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def field_kinds(col) -> set | None:
    """The kinds (FieldTypes' names) Python values of a flat Arrow column have; None for a type this path leaves alone."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    nulls = col.null_count
    if pa.types.is_null(t):
        return {"null"}
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_timestamp(t):
        base = "str"
    elif pa.types.is_boolean(t):
        base = "bool"
    elif pa.types.is_integer(t) and not pa.types.is_uint64(t):
        mm = pc.min_max(col)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        if lo is not None and (lo < -INT53 or hi > INT53):
            return None
        base = "int"
    else:
        return None
    return ({"null"} if nulls else set()) | ({base} if nulls < len(col) else set())


def read_json_lines(data: bytes, parse_options=None):
    """`pyarrow.json.read_json` of whole JSON lines in two blocks (two threads), or in one when a
    line is longer than half; None when pyarrow refuses them (the caller's slower path decides)."""
    import pyarrow as pa
    import pyarrow.json as pj

    for size in (max(1 << 20, len(data) // 2 + 2), len(data) + 2):
        try:
            return pj.read_json(pa.py_buffer(data), read_options=pj.ReadOptions(block_size=size), parse_options=parse_options)
        except Exception:
            if size > len(data):
                return None
    return None


def json_lines_block(block: bytes, source: str, first_line: int, text_field: str, id_field: str,
                     label_field: str | None) -> RecordBlock | None:
    """A block of whole JSON lines (each ending in LF, the last maybe not) as a RecordBlock, or None.

    None whenever the ordinary reader might store or reject anything differently.
    """
    if not block or b"\r" in block or not block.startswith(b"{"):
        return None
    ends_with_lf = block.endswith(b"\n")
    data = np.frombuffer(block, dtype=np.uint8)
    lf = np.flatnonzero(data == 10)
    inner = lf[:-1] if ends_with_lf else lf  # LFs between lines: never the first or the last byte
    # every line '{...}' (so no blank line); a raw control byte other than TAB (JSON whitespace to
    # Python too) and LF is refused by pyarrow, in strings and between tokens alike (tested)
    if data[len(block) - 1 - ends_with_lf] != 125 or not ((data[inner - 1] == 125) & (data[inner + 1] == 123)).all():
        return None
    n = len(inner) + 1
    record_ends = lf + 1 if ends_with_lf else np.append(lf + 1, len(block) + 1)  # each line with its LF
    if not valid_utf8(block):  # pyarrow.json does not check UTF-8 inside strings
        return None
    table = read_json_lines(block)
    if table is None or table.num_rows != n:  # pyarrow refuses the block (a bad line), or a line held more than one object
        return None
    names = table.column_names
    if text_field not in names or id_field not in names:
        return None
    kinds: dict[str, set] = {}
    for name in names:
        col = table.column(name)
        k = field_kinds(col)
        if k is None or col.null_count:
            return None
        kinds[name] = k
    return finish_block(table, source, first_line, text_field, id_field, label_field, kinds,
                        block if ends_with_lf else block + b"\n", np.diff(record_ends, prepend=0))


def finish_block(table, source: str, first_line: int, text_field: str, id_field: str, label_field: str | None,
                 kinds: dict, records: bytes, record_lengths: np.ndarray) -> RecordBlock | None:
    """The text, id and label columns of a checked table into a RecordBlock (None: a blank text, or a column this path leaves alone)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = table.column(text_field).combine_chunks()
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)) or text.null_count:
        return None
    ids_col = table.column(id_field)
    if ids_col.null_count or not kinds[id_field] <= {"str", "int", "bool"} or pa.types.is_timestamp(ids_col.type):
        return None
    data, offsets = string_buffers(text)
    text_hash, blank = hash_utf8_blanks(data, offsets)  # a blank text (`not text.strip()`) has an empty key
    if blank:
        return None  # the ordinary path rejects it
    labels: list = []
    label_index = np.full(len(text), -1, dtype=np.int32)
    if label_field and label_field in table.column_names:
        lab = table.column(label_field).combine_chunks()
        if pa.types.is_timestamp(lab.type):
            return None
        distinct = pc.unique(lab).drop_null()  # in order of first appearance
        labels = distinct.to_pylist()
        label_index = filled_int32(pc.index_in(lab, value_set=distinct), -1)
    id_data, id_offsets = string_buffers(json_values(ids_col.combine_chunks() if isinstance(ids_col, pa.ChunkedArray) else ids_col))
    return RecordBlock(source, first_line, bytes_hashes(id_data, id_offsets), text_hash, data, offsets, records,
                       record_lengths, labels, label_index, kinds)


def large(s: str):
    """A large_string scalar (Arrow's string kernels want one type for every argument).

    Made from buffers: converting a Python value (`pa.scalar`, `pa.array`) makes pyarrow
    import pandas, about a second of a run that needs no pandas (see `filled_int32`).
    """
    import pyarrow as pa

    data = s.encode("utf-8")
    return pa.Array.from_buffers(pa.large_string(), 1, [None, pa.py_buffer(np.array([0, len(data)], dtype=np.int64)),
                                                        pa.py_buffer(data)])[0]


def filled_int32(arr, missing: int) -> np.ndarray:
    """An int32 Arrow array's values as numpy, `missing` where null (no Python scalar: see `large`)."""
    validity, values = arr.buffers()
    out = np.frombuffer(values, dtype=np.int32)[arr.offset: arr.offset + len(arr)]
    if arr.null_count:
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
        out = np.where(bits[arr.offset: arr.offset + len(arr)].astype(bool), out, missing)
    return out.astype(np.int32)


# per byte: the length of its JSON escape (1: none) and the character after the backslash
# ('u': \u00XX); what Python's JSON encoder escapes with ensure_ascii=False
JSON_SHORT_ESCAPES = {ord('"'): '"', ord("\\"): "\\", 10: "n", 13: "r", 9: "t", 8: "b", 12: "f"}
JSON_ESCAPE_LENGTH = np.array([2 if b in JSON_SHORT_ESCAPES else 6 if b < 32 else 1 for b in range(256)], dtype=np.int64)
JSON_ESCAPE_CHAR = np.array([ord(JSON_SHORT_ESCAPES.get(b, "u")) for b in range(256)], dtype=np.uint8)
HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


ESCAPE_CHUNK = 32  # bytes checked at once for anything to escape


@nb.njit(cache=True, nogil=True, inline="always")
def needs_escape(src, start, stop):
    """Non-zero when src[start:stop] holds a byte JSON escapes (a control byte, '"', '\\'): a loop that vectorises."""
    found = np.uint8(0)
    for i in range(start, stop):
        b = src[i]
        found |= np.uint8(b < np.uint8(32)) | np.uint8(b == np.uint8(34)) | np.uint8(b == np.uint8(92))
    return found


@nb.njit(cache=True, nogil=True)
def json_escape(data, offsets, valid, length, char, hexdigits):
    """(bytes, offsets) of each UTF-8 value as a quoted JSON string; `null` where not valid.

    Values are taken ESCAPE_CHUNK bytes at a time: a chunk with nothing to escape (most)
    is copied whole, the others byte by byte.
    """
    n = len(offsets) - 1
    out_off = np.zeros(n + 1, dtype=np.int64)
    for k in range(n):
        size = 4
        if valid[k]:
            src = data[offsets[k]:offsets[k + 1]]
            size = 2 + len(src)
            for i in range(0, len(src), ESCAPE_CHUNK):
                stop = min(i + ESCAPE_CHUNK, len(src))
                if needs_escape(src, i, stop):
                    for j in range(i, stop):
                        size += length[src[j]] - 1
        out_off[k + 1] = out_off[k] + size
    out = np.empty(out_off[n], dtype=np.uint8)
    for k in range(n):
        p = out_off[k]
        if not valid[k]:
            out[p], out[p + 1], out[p + 2], out[p + 3] = 110, 117, 108, 108  # null
            continue
        src = data[offsets[k]:offsets[k + 1]]
        out[p] = 34
        p += 1
        if out_off[k + 1] - out_off[k] == len(src) + 2:  # nothing to escape
            out[p:p + len(src)] = src
            out[p + len(src)] = 34
            continue
        for i in range(0, len(src), ESCAPE_CHUNK):
            stop = min(i + ESCAPE_CHUNK, len(src))
            if not needs_escape(src, i, stop):
                out[p:p + stop - i] = src[i:stop]
                p += stop - i
                continue
            for j in range(i, stop):
                b = src[j]
                m = length[b]
                if m == 1:
                    out[p] = b
                    p += 1
                    continue
                out[p] = 92
                out[p + 1] = char[b]
                if m == 6:
                    out[p + 2], out[p + 3], out[p + 4], out[p + 5] = 48, 48, hexdigits[b >> 4], hexdigits[b & 15]
                p += m
        out[p] = 34
    return out, out_off


def json_strings(col):
    """Each value of a string column as a JSON string (`json.dumps(v, ensure_ascii=False)`), nulls as `null`; large_string."""
    import pyarrow as pa

    col = col.cast(pa.large_string())
    data, offsets = string_buffers(col)
    valid = col.is_valid().to_numpy(zero_copy_only=False) if col.null_count else np.ones(len(col), dtype=bool)
    out, out_off = json_escape(np.frombuffer(data, dtype=np.uint8), offsets, valid, JSON_ESCAPE_LENGTH, JSON_ESCAPE_CHAR,
                               HEX_DIGITS)
    return pa.Array.from_buffers(pa.large_string(), len(col), [None, pa.py_buffer(out_off), pa.py_buffer(out)])


def json_values(col):
    """Each value of a flat column as JSON text (what Python's JSON encoder writes for its Python value); large_string."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_null(t):
        return pa.array(["null"] * len(col), pa.large_string())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return json_strings(col)
    if pa.types.is_boolean(t):
        out = pc.if_else(col, large("true"), large("false"))
    else:  # integers: decimal digits, as int.__repr__
        out = pc.cast(col, pa.large_string())
    return pc.fill_null(out, large("null")) if col.null_count else out


def parquet_batch_block(batch, source: str, first_row: int, text_field: str, id_field: str,
                        label_field: str | None) -> RecordBlock | None:
    """One Parquet record batch as a RecordBlock, or None when the ordinary reader might store or reject anything differently."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from json.encoder import encode_basestring

    names = batch.schema.names
    if len(set(names)) != len(names) or text_field not in names or id_field not in names or batch.num_rows == 0:
        return None
    kinds: dict[str, set] = {}
    for name, col in zip(names, batch.columns):
        k = field_kinds(col)
        if k is None:
            return None
        if pa.types.is_timestamp(col.type):
            return None
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            try:
                col.validate(full=True)  # Arrow does not check UTF-8 when reading Parquet
            except Exception:
                return None
        kinds[name] = k
    parts: list = ["{"]
    for j, (name, col) in enumerate(zip(names, batch.columns)):
        parts.append(("" if j == 0 else ", ") + encode_basestring(name) + ": ")
        parts.append(json_values(col))
    parts.append("}\n")
    merged: list = []  # adjacent literals joined
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    lines = pc.binary_join_element_wise(*[large(p) if isinstance(p, str) else p for p in merged], large(""))
    records, rec_off = string_buffers(lines)
    table = pa.Table.from_batches([batch])
    return finish_block(table, source, first_row, text_field, id_field, label_field, kinds, records, np.diff(rec_off))
