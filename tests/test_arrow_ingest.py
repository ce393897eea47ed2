"""The columnar fast paths of ingest (arrow_ingest.py, issue 16 item 2).

A JSON-lines block read by pyarrow.json, or a Parquet batch taken as Arrow columns, must
give the very store files, rejects and counts that the line-by-line reader gives; where
pyarrow and Python's json could disagree (duplicate keys, control characters, invalid
UTF-8, lone surrogates, nulls, missing or non-string text, numbers, nested values,
blank or CR lines) the block must fall back. Each case is ingested both ways and the
results compared byte for byte; the plain cases must really take the fast path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextsort.arrow_ingest import json_lines_block, json_strings, parquet_batch_block
from contextsort.parallel_ingest import ReadOptions, ingest_inputs

STORE_FILES = ["records.jsonl", "records.idx.npy", "text.bin", "text.idx.npy", "text_hash.npy", "label_codes.npy",
               "label_names.json", "fields.json"]


def good_lines(n: int, start: int = 0) -> list[bytes]:
    out = []
    for i in range(start, start + n):
        text = f"Document {i}: \"quoted\" text with a back\\slash, caf\u00e9 \u00a3{i} and TABS\tand\nlines  " * (1 + i % 3)
        out.append(json.dumps({"id": f"g{i}", "label": ["a", "b", "c"][i % 3], "text": text}, ensure_ascii=i % 2 == 0).encode())
    return out


# (name, line or lines inserted among good lines)
TRICKY_JSONL = [
    ("duplicate_text_key", [b'{"id": "dup1", "text": "first", "text": "second"}']),
    ("duplicate_key_escaped", [b'{"id": "dup2", "\\u0069d": 7, "text": "x"}']),
    ("raw_control_char", [b'{"id": "c1", "text": "a\x01b"}']),
    ("raw_tab_in_string", [b'{"id": "c2", "text": "a\tb"}']),
    ("raw_nul_in_string", [b'{"id": "c3", "text": "a\x00b"}']),
    ("tab_between_tokens", [b'{"id": "c4",\t"text": "tab between tokens"}']),
    ("escaped_controls", [b'{"id": "c5", "text": "a\\u0001b\\u0000c\\u001fd\\u007f"}']),
    ("invalid_utf8", [b'{"id": "u1", "text": "caf\xe9"}']),
    ("lone_surrogate", [b'{"id": "s1", "text": "a\\ud800b"}']),
    ("surrogate_pair", [b'{"id": "s2", "text": "emoji \\ud83d\\ude00 here"}']),
    ("missing_text", [b'{"id": "m1", "body": "no text field"}']),
    ("null_text", [b'{"id": "m2", "text": null}']),
    ("int_text", [b'{"id": "m3", "text": 12}']),
    ("empty_text", [b'{"id": "m4", "text": ""}']),
    ("blank_text", [b'{"id": "m5", "text": " \\t\\n "}']),
    ("unicode_blank_text", ['{"id": "m6", "text": "\u3000\u2028\x1c"}'.encode()]),
    ("null_id", [b'{"id": null, "text": "null id gets its position"}']),
    ("missing_id", [b'{"text": "no id gets its position"}']),
    ("float_id", [b'{"id": 1.0, "text": "float id"}']),
    ("big_int", [b'{"id": 123456789012345678901234567890, "text": "huge id"}']),
    ("int53_field", [b'{"id": "i53", "n": 9007199254740993, "text": "beyond 2**53"}']),
    ("nan", [b'{"id": "n1", "x": NaN, "text": "nan field"}']),
    ("nested", [b'{"id": "n2", "tags": [1, 2], "meta": {"a": "b"}, "text": "nested"}']),
    ("extra_field", [b'{"id": "e1", "source": "web", "text": "one more field"}']),
    ("date_field", [b'{"id": "d1", "date": "2024-01-01", "text": "a date-like string"}']),
    ("key_order", [b'{"text": "keys in another order", "label": "a", "id": "k1"}']),
    ("bool_label", [b'{"id": "b1", "label": true, "text": "bool label"}']),
    ("two_objects", [b'{"id": "t1", "text": "a"} {"id": "t2", "text": "b"}']),
    ("trailing_garbage", [b'{"id": "t3", "text": "a"} x']),
    ("blank_line", [b"", b"   "]),
    ("crlf", [b'{"id": "r1", "text": "crlf"}\r']),
    ("not_object", [b'["id", "text"]']),
    ("malformed", [b'{"id": "bad", "text": "unterminated}']),
    ("duplicate_id", [b'{"id": "g3", "text": "an id already used"}']),
    ("unicode_space_and_case", ['{"id": "k2", "text": "\u0130STANBUL\u00a0STRA\u1e9eE \u039f\u0394\u039f\u03a3 \u03a3\u0301 e\u0301"}'.encode(),
                                b'{"id": "k3", "text": "  \\u0130stanbul\\u3000stra\\u1e9ee\\r\\n\\u039f\\u0394\\u039f\\u03a3 \\u03a3\\u0301 E\\u0301\\u001c"}']),
    ("separators_and_nul", [b'{"id": "k4", "text": "a\\u001cb\\u001fc\\u0000d\\u0085e\\u2028f"}']),
]


def ingest(path: Path, out: Path, columnar: bool, **kw) -> tuple[dict, list, list]:
    res = ingest_inputs([str(path)], out / "store", out / "parts", ReadOptions(columnar=columnar), **kw)
    files = {f: (out / "store" / f).read_bytes() for f in STORE_FILES}
    return files, [r.to_json() for r in res.rejects], [c.to_json() for c in res.counts]


def assert_same(path: Path, tmp: Path, **kw) -> tuple[dict, list, list]:
    fast = ingest(path, tmp / "fast", True, **kw)
    slow = ingest(path, tmp / "slow", False, **kw)
    for f in STORE_FILES:
        assert fast[0][f] == slow[0][f], f
    assert fast[1] == slow[1]
    assert fast[2] == slow[2]
    return fast


@pytest.mark.parametrize("name,lines", TRICKY_JSONL, ids=[c[0] for c in TRICKY_JSONL])
def test_jsonl_fast_and_line_by_line_give_the_same_store(tmp_path, name, lines):
    """Each tricky line among good ones, and alone; the block holding it, and a block of only such lines."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(good_lines(40) + lines + good_lines(40, 40)) + b"\n")
    files, rejects, counts = assert_same(path, tmp_path / "mixed")
    assert counts[0]["records"] == counts[0]["documents"] + counts[0]["rejected"]
    only = tmp_path / "only.jsonl"
    only.write_bytes(b"\n".join(lines * 3))  # no final LF
    assert_same(only, tmp_path / "only")


def test_every_record_accounted_for_on_all_tricky_lines_at_once(tmp_path):
    from contextsort.corpus import DocStore

    lines = good_lines(30)
    for _, extra in TRICKY_JSONL:
        lines += extra + good_lines(5, len(lines) + 1000)
    path = tmp_path / "all.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    files, rejects, counts = assert_same(path, tmp_path)
    store = DocStore(tmp_path / "fast" / "store")
    assert counts[0]["records"] == len(store) + len(rejects)
    # cut into pieces (byte ranges read as tasks): still the same store
    files_p, rejects_p, counts_p = ingest(path, tmp_path / "pieces", True, piece_bytes=2000)
    assert files_p == files and rejects_p == rejects and counts_p == counts


def test_plain_blocks_take_the_fast_path_and_tricky_ones_do_not():
    plain = b"\n".join(good_lines(50)) + b"\n"
    block = json_lines_block(plain, "f", 1, "text", "id", "label")
    assert block is not None and len(block) == 50 and block.records == plain
    must_fall_back = {"duplicate_text_key", "duplicate_key_escaped", "raw_control_char", "raw_tab_in_string",
                      "raw_nul_in_string", "invalid_utf8", "lone_surrogate", "missing_text", "null_text", "int_text",
                      "empty_text", "blank_text", "unicode_blank_text", "null_id", "missing_id", "float_id", "big_int",
                      "int53_field", "nan", "nested", "two_objects", "trailing_garbage", "blank_line", "crlf",
                      "not_object", "malformed"}
    for name, lines in TRICKY_JSONL:
        alone = json_lines_block(b"\n".join(lines * 3) + b"\n", "f", 1, "text", "id", "label")
        assert (alone is None) == (name in must_fall_back), name
        if name in must_fall_back:  # and among good lines
            assert json_lines_block(b"\n".join(good_lines(3) + lines + good_lines(3, 3)) + b"\n", "f", 1, "text", "id", "label") is None


def test_huge_line_and_mapped_fields(tmp_path):
    path = tmp_path / "huge.jsonl"
    big = json.dumps({"id": "big", "text": "word " * 1_200_000}).encode()  # 6 MB: longer than a read chunk
    path.write_bytes(b"\n".join(good_lines(10) + [big] + good_lines(10, 10)) + b"\n")
    assert_same(path, tmp_path / "h")
    spec = tmp_path / "mapped.jsonl"
    spec.write_bytes(b"\n".join(json.dumps({"doc": i, "body": f"text {i}"}).encode() for i in range(20)) + b"\n")
    fast = ingest_inputs([f"{spec}:text=body,id=doc"], tmp_path / "m1" / "store", tmp_path / "m1" / "p", ReadOptions(columnar=True))
    slow = ingest_inputs([f"{spec}:text=body,id=doc"], tmp_path / "m2" / "store", tmp_path / "m2" / "p", ReadOptions(columnar=False))
    assert fast.writer.n == slow.writer.n == 20
    for f in STORE_FILES:
        assert (tmp_path / "m1" / "store" / f).read_bytes() == (tmp_path / "m2" / "store" / f).read_bytes()


PARQUET_TABLES = {
    "plain": lambda n: pa.table({"id": list(range(n)), "label": [["x", "y"][i % 2] for i in range(n)],
                                 "text": [f"text {i} \"q\" back\\slash caf\u00e9 \u00a3 \t tab\nline" for i in range(n)]}),
    "control_chars": lambda n: pa.table({"id": [f"d{i}" for i in range(n)],
                                         "text": [f"a\x01b\x0bc\x1fd\x00e\x7f\x08\x0c\r {i}" for i in range(n)]}),
    "nulls_in_fields": lambda n: pa.table({"id": list(range(n)), "label": [None if i % 3 else "l" for i in range(n)],
                                           "flag": [None if i % 2 else i % 4 == 0 for i in range(n)],
                                           "empty": pa.nulls(n), "text": [f"t {i}" for i in range(n)]}),
    "null_text": lambda n: pa.table({"id": list(range(n)), "text": [None if i == 5 else f"t {i}" for i in range(n)]}),
    "blank_text": lambda n: pa.table({"id": list(range(n)), "text": ["\u3000 \x1c" if i == 7 else "" if i == 8 else f"t {i}" for i in range(n)]}),
    "null_id": lambda n: pa.table({"id": [None if i == 2 else i for i in range(n)], "text": [f"t {i}" for i in range(n)]}),
    "no_id_column": lambda n: pa.table({"text": [f"t {i}" for i in range(n)]}),
    "float_field": lambda n: pa.table({"id": list(range(n)), "score": [i / 3 for i in range(n)], "text": [f"t {i}" for i in range(n)]}),
    "nested_field": lambda n: pa.table({"id": list(range(n)), "tags": [[i, i + 1] for i in range(n)], "text": [f"t {i}" for i in range(n)]}),
    "binary_text": lambda n: pa.table({"id": list(range(n)), "text": pa.array([f"t {i}".encode() for i in range(n)], pa.binary())}),
    "big_ints": lambda n: pa.table({"id": [2**62 + i for i in range(n)], "text": [f"t {i}" for i in range(n)]}),
    "duplicate_ids": lambda n: pa.table({"id": [i % 7 for i in range(n)], "label": [str(i % 3) for i in range(n)],
                                         "text": [f"t {i}" for i in range(n)]}),
    "unicode_names": lambda n: pa.table({"id": list(range(n)), "t\u00eftle \"x\"": ["v"] * n, "text": [f"\u4e2d\u6587 {i}" for i in range(n)]}),
}


@pytest.mark.parametrize("name", list(PARQUET_TABLES))
def test_parquet_fast_and_row_by_row_give_the_same_store(tmp_path, name):
    path = tmp_path / "in.parquet"
    pq.write_table(PARQUET_TABLES[name](300), path, row_group_size=128)
    assert_same(path, tmp_path)


def test_parquet_invalid_utf8_in_a_string_column_falls_back(tmp_path):
    import pyarrow.compute as pc

    raw = pa.array([f"t {i}".encode() if i != 4 else b"caf\xe9" for i in range(50)], pa.binary())
    bad = raw.view(pa.string())  # Arrow does not check UTF-8 here; Parquet keeps the bytes
    table = pa.table({"id": list(range(50)), "note": bad, "text": pc.cast(pa.array([f"t {i}" for i in range(50)]), pa.string())})
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    files, rejects, counts = assert_same(path, tmp_path)
    assert [r["line"] for r in rejects] == [5] and counts[0]["rejected"] == 1
    batch = next(pq.ParquetFile(path).iter_batches())
    assert parquet_batch_block(batch, "f", 1, "text", "id", "label") is None


def test_plain_parquet_takes_the_fast_path():
    batch = PARQUET_TABLES["plain"](100).to_batches()[0]
    block = parquet_batch_block(batch, "f", 1, "text", "id", "label")
    assert block is not None and len(block) == 100
    lines = bytes(block.records).decode().splitlines(keepends=False)
    want = [json.dumps(r, ensure_ascii=False) for r in batch.to_pylist()]
    assert [json.loads(x) for x in lines] == batch.to_pylist() and bytes(block.records).decode() == "\n".join(want) + "\n"


def test_json_strings_is_pythons_encoder():
    values = ["plain", "", "q\"uote", "back\\slash", "nl\n cr\r tab\t bs\b ff\f", "\x00\x01\x0b\x1f\x7f", "caf\u00e9 \u2028 \U0001f600", None, "".join(map(chr, range(128))), None, "\u00e9\\\u3000\"", ""]
    got = json_strings(pa.array(values, pa.string())).to_pylist()
    assert got == [json.dumps(v, ensure_ascii=False) for v in values]
    sliced = json_strings(pa.array(values, pa.string()).slice(5, 6)).to_pylist()  # an offset into the buffers
    assert sliced == [json.dumps(v, ensure_ascii=False) for v in values[5:11]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text("abc \u00e9\U0001f600" * 8 + "\"\\\n\x01\x1f", max_size=120)), max_size=8),
       st.integers(0, 3))
def test_json_strings_in_chunks_is_pythons_encoder(values, skip):
    """Long values with rare characters to escape at any place (the kernel copies clean 32-byte chunks whole)."""
    arr = pa.array(values, pa.string()).slice(min(skip, len(values)))
    assert json_strings(arr).to_pylist() == [json.dumps(v, ensure_ascii=False) if v is not None else "null" for v in values[skip:]]


def test_json_strings_escapes_at_chunk_edges():
    from contextsort.arrow_ingest import ESCAPE_CHUNK

    values = []
    for at in (0, 1, ESCAPE_CHUNK - 1, ESCAPE_CHUNK, ESCAPE_CHUNK + 1, 2 * ESCAPE_CHUNK - 1, 3 * ESCAPE_CHUNK):
        for ch in ('"', "\\", "\n", "\x00", "\x1f"):
            values.append("x" * at + ch + "y" * (2 * ESCAPE_CHUNK))
            values.append("x" * at + ch)
    values += ["z" * n for n in (ESCAPE_CHUNK - 1, ESCAPE_CHUNK, 5 * ESCAPE_CHUNK + 3)]
    assert json_strings(pa.array(values, pa.string())).to_pylist() == [json.dumps(v, ensure_ascii=False) for v in values]


TRICKY_CHARS = "aZ \t\n\r\x00\x01\x1c\x1f\x7f\x85\xa0\u2028\u3000\"\\/\u00e9\u03a3\U0001f600\u0130\u1e9e\u0301'\u02b0"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.one_of(st.integers(-5, 5), st.text("ab", max_size=2)),
                               st.text(TRICKY_CHARS, max_size=12),
                               st.sampled_from(["x", "y", None]),
                               st.booleans(), st.booleans()), min_size=1, max_size=30), uniform=st.booleans())
def test_random_lines_same_store_both_ways(tmp_path, rows, uniform):
    """Random ids (repeats included), texts of tricky characters (blank ones too), labels, ASCII or raw UTF-8;
    `uniform`: string ids, every field in every line and non-blank texts, so the block must take the fast path."""
    lines = []
    for rid, text, label, ascii_only, extra in rows:
        row = {"id": f"i{rid}" if uniform else rid, "text": "t" + text if uniform else text}
        if label is not None or uniform:
            row["label"] = label or "z"
        if extra or uniform:
            row["n"] = len(text)
        lines.append(json.dumps(row, ensure_ascii=ascii_only).encode())
    data = b"\n".join(lines) + b"\n"
    if uniform:
        assert json_lines_block(data, "f", 1, "text", "id", "label") is not None
    path = tmp_path / f"r{abs(hash(tuple(lines))) % 10**9}.jsonl"
    path.write_bytes(data)
    assert_same(path, path.with_suffix(""))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(-3, 3), st.text(TRICKY_CHARS, max_size=12), st.sampled_from(["x", "y", None]),
                               st.one_of(st.none(), st.booleans())), min_size=1, max_size=30))
def test_random_parquet_same_store_both_ways(tmp_path, rows):
    """Random int ids (repeats included), texts of tricky characters (blank and empty ones too), null labels and flags."""
    table = pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows], "label": pa.array([r[2] for r in rows], pa.string()),
                      "flag": pa.array([r[3] for r in rows], pa.bool_())})
    path = tmp_path / f"p{abs(hash(tuple(rows))) % 10**9}.parquet"
    pq.write_table(table, path, row_group_size=7)
    assert_same(path, path.with_suffix(""))
    if all(r[1].strip() for r in rows):  # no blank text: every batch takes the fast path
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            assert parquet_batch_block(batch, "f", 1, "text", "id", "label") is not None


@pytest.mark.parametrize("ids", [["caf\u00e9", "\U0001f600 id", "7", "plain", "q\"uote", "back\\slash", "tab\there"],
                                 [7, -3, 0, 2**40, 12, 13, 14]], ids=["str", "int"])
def test_duplicate_ids_found_across_fast_and_line_by_line_pieces(tmp_path, ids):
    """Ids first seen in pieces that take the fast path, repeated in a piece that falls back
    (and the other way round): the id hashes of both paths agree, so every repeat is rejected."""
    def lines(prefix, id_list, ascii_only):
        return [json.dumps({"id": rid, "text": f"{prefix} {k}"}, ensure_ascii=ascii_only).encode() for k, rid in enumerate(id_list)]

    filler = [f"g{i}" for i in range(200)] if isinstance(ids[0], str) else list(range(1000, 1200))
    bad = b'{"id": "c1", "text": "a\x01b"}'  # a raw control byte: this piece is read line by line
    path = tmp_path / "ids.jsonl"
    path.write_bytes(b"\n".join(lines("first", ids, False) + lines("fill", filler[:60], False) + [bad] + lines("again", ids, True)
                                + lines("fill", filler[100:160], False) + lines("again", ids, False)) + b"\n")
    blocks = [json_lines_block(b"\n".join(lines("x", ids, a)) + b"\n", "f", 1, "text", "id", "label") for a in (False, True)]
    assert all(b is not None for b in blocks)  # such lines alone take the fast path
    fast, rejects, counts = ingest(path, tmp_path / "pieces", True, piece_bytes=1000)
    slow = ingest(path, tmp_path / "slow", False)
    assert fast == slow[0] and rejects == slow[1] and counts == slow[2]
    reasons = [r["reason"] for r in rejects]
    assert sum("duplicate id" in r for r in reasons) == 2 * len(ids) and len(reasons) == 2 * len(ids) + 1, reasons
    assert counts[0]["records"] == 3 * len(ids) + 121
