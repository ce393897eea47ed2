"""The write stage's fast paths (formats/spliced.py, removed.py's ids) give what decoding gives.

Each stored record is passed through with its position spliced in, and the Parquet table
is parsed from those lines; the lines must decode to exactly the records the decoding path
writes (ordered_rows), the table must equal its table, and any batch the fast path cannot
vouch for must fall back (and still be right).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contextsort.corpus import DocStore
from contextsort.formats import ordered_batch, ordered_rows, parquet_table, write_ordered
from contextsort.formats.removed import BAD_EMBEDDING, id_type, removed_lines, stored_ids
from contextsort.formats.schema import output_schema
from contextsort.formats.spliced import splice_positions, spliced_batch
from contextsort.parallel_ingest import ingest_inputs


def store_of(tmp_path: Path, lines: list[str]) -> DocStore:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ingest_inputs([str(path)], tmp_path / "store", tmp_path / "parts")
    return DocStore(tmp_path / "store")


def plain_lines(n: int = 300) -> list[str]:
    """Flat records written every which way: compact and spaced, ASCII escapes and raw UTF-8,
    number spellings Python would write otherwise, an optional field, spaces before the brace."""
    out = []
    for i in range(n):
        rec = {"id": f"d{i}", "label": "ab"[i % 2], "text": f"caf\u00e9 \u00a3{i} \"q\" \\ {i}" * (1 + i % 3),
               "score": i / 7, "flag": i % 3 == 0}
        if i % 5 == 0:
            rec["note"] = f"n{i}"
        line = json.dumps(rec, ensure_ascii=i % 2 == 0, separators=(",", ":") if i % 3 else (", ", ": "))
        if i % 11 == 0:
            line = re.sub(r'"score": ?[^,}]+', '"score":1.50e1', line)
        if i % 7 == 0:
            line = line[:-1] + "  }"
        out.append(line)
    return out


def decoded(store: DocStore, order: np.ndarray, start: int, stop: int, label_field="label"):
    policy = output_schema(store, label_field)
    rows = list(ordered_rows(store, order, policy, label_field, start, stop))
    return rows, parquet_table(rows, policy), policy


def check_batch(store: DocStore, order: np.ndarray, start: int, stop: int, label_field="label") -> bool:
    """ordered_batch equals the decoding path; returns whether the fast path took the batch."""
    rows, table, policy = decoded(store, order, start, stop, label_field)
    fast = spliced_batch(store, np.asarray(order[start:stop]), start, policy, label_field, True) is not None
    data, got = ordered_batch(store, order, policy, label_field, start, stop)
    lines = data.decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == stop - start + 1
    assert [json.loads(x) for x in lines[:-1]] == rows
    assert got.equals(table)
    return fast


def test_flat_records_take_the_fast_path_and_equal_decoding(tmp_path):
    store = store_of(tmp_path, plain_lines())
    order = np.random.default_rng(1).permutation(len(store))
    assert check_batch(store, order, 0, len(order))
    assert check_batch(store, order, 100, 137)
    # the record bytes are passed through: the input's own spelling of a number stays
    data, _ = ordered_batch(store, np.array([11]), output_schema(store, "label"), "label", 0, 1)
    assert b'"score":1.50e1' in data and data.endswith(b', "position": 0}\n')


@pytest.mark.parametrize("trouble,fast", [
    ('{"id": "x1", "label": "a", "text": "nested", "tags": ["p", "q"]}', False),  # a nested column
    ('{"id": "x2", "text": "no label here"}', False),  # the store adds its label (null): decoded
    ('{"id": "x3", "label": "b", "text": "a big one", "big": 123456789012345678901234567890}', False),  # JSON text column
    ('{"id": "x4", "label": "a", "text": "has a position", "position": 7}', True),  # contextsort_position
])
def test_batches_the_fast_path_cannot_vouch_for_are_decoded(tmp_path, trouble, fast):
    lines = plain_lines(40)
    lines.insert(17, trouble)
    store = store_of(tmp_path, lines)
    order = np.arange(len(store))[::-1].copy()
    assert check_batch(store, order, 0, len(order)) is fast


def test_write_ordered_files_read_back(tmp_path):
    store = store_of(tmp_path, plain_lines())
    order = np.random.default_rng(2).permutation(len(store))
    out = tmp_path / "out"
    out.mkdir()
    write_ordered(out, store, order, ["jsonl", "parquet"], "label")
    rows = [json.loads(x) for x in (out / "ordered.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["position"] for r in rows] == list(range(len(order)))
    assert [r["id"] for r in rows] == [store.record(int(i))["id"] for i in order]
    table = pq.read_table(out / "ordered.parquet")
    assert table.to_pylist() == [{c: r.get(c) for c in table.column_names} for r in rows]  # a missing field: null
    assert set(table.column_names) == set().union(*rows)


def reference_splice(records: list[bytes], first: int, key: bytes) -> bytes | None:
    out = []
    for k, r in enumerate(records):
        body = r.rstrip(b" \t\r\n")
        if not body.startswith(b"{") or not body.endswith(b"}") or body[:-1].rstrip(b" \t\r\n") == b"{":
            return None
        out.append(body[:-1] + key + str(first + k).encode() + b"}\n")
    return b"".join(out)


@pytest.mark.parametrize("records", [
    [b'{"a": 1}', b'{"b":2}\n', b'{"c": "}"}  \r\n', b'{"d": {"e": 1} }'],
    [b'{"a": 1}', b"{}"],  # an empty object has no field to follow
    [b'{"a": 1}', b"[1, 2]"],  # not an object
    [b'{"a": 1}', b'{"a": 2'],  # no closing brace
])
def test_splice_kernel_against_plain_python(records):
    key = b', "position": '
    ends = np.cumsum([len(r) for r in records]).astype(np.int64)
    got = splice_positions(np.frombuffer(b"".join(records), dtype=np.uint8), ends, 998, np.frombuffer(key, dtype=np.uint8))
    want = reference_splice(records, 998, key)
    assert (got.tobytes() if len(got) else None) == want


def reference_removed_lines(store: DocStore, index, dup, sim) -> list[str]:
    """removed.jsonl's lines as the decoding path wrote them: whole records decoded, rows encoded by json.dumps."""
    def rid(d):
        return store.record(d).get("id", d)

    out = []
    for i, j, s in zip(index.tolist(), dup.tolist(), sim.tolist()):
        row = ({"id": rid(i), "reason": BAD_EMBEDDING} if j < 0 else
               {"id": rid(i), "reason": "duplicate", "duplicate_of": rid(j), "similarity": None if s != s else round(s, 6)})
        out.append(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return out


@pytest.mark.parametrize("ids,columnar", [
    (['a"quote', "caf\u00e9", "back\\slash", "tab\there", "\u2028", "plain", "x" * 300, "\U0001f600"], True),
    ([0, 17, -3, 2**53 + 1, 2**62, 5, 6, 7], True),
    ([1, "one", 2, "two", 3, "three", 4, "four"], False),  # mixed kinds: each record decoded
])
def test_removed_lines_equal_the_decoding_path(tmp_path, ids, columnar):
    lines = [json.dumps({"id": v, "text": f"document number {k} " * 20}, ensure_ascii=k % 2 == 0) for k, v in enumerate(ids)]
    if columnar and type(ids[0]) is int:
        lines.append('{"text": "no id: ingest stores its position as its id", "extra": 1}')
    else:
        lines.append(json.dumps({"id": ids[2], "text": "a repeated id: rejected at ingest"}))
    store = store_of(tmp_path, lines)
    assert (id_type(store, "id") is not None) is columnar
    index = np.array([1, 3, 7, 0, 5], dtype=np.int64)
    dup = np.array([0, 7, 2, -1, 6], dtype=np.int64)
    sim = np.array([0.98765432, 1.0, 0.9, np.nan, 0.97], dtype=np.float32)
    if len(store) > 8:
        index[2] = 8  # the record stored without an id of its own
    assert list(removed_lines(store, "id", index, dup, sim)) == reference_removed_lines(store, index, dup, sim)


def test_stored_ids_fall_back_where_pyarrow_refuses(tmp_path):
    store = store_of(tmp_path, [json.dumps({"id": f"d{k}", "text": f"text {k} " * 9}) for k in range(6)])
    wanted = np.arange(6, dtype=np.int64)
    assert stored_ids(store, wanted, "id", id_type(store, "id")) == [f"d{k}" for k in range(6)]
    # a type that does not fit the ids: the batch is decoded record by record, same result
    import pyarrow as pa

    assert stored_ids(store, wanted, "id", pa.int64()) == [f"d{k}" for k in range(6)]
    assert stored_ids(store, wanted, "nothere", pa.string()) == list(range(6))  # no such field: positions


CHARS = st.sampled_from(["a", "Z", " ", '"', "\\", "\n", "\t", "\x01", "}", "{", ",", ":", "\u00e9", "\u00a3", "\u2028",
                         "\U0001f600"])
FLAT_VALUES = {  # a column of one kind, as the fast path takes it; nulls and missing fields mixed in
    "str": st.text(CHARS, max_size=8),
    "int": st.integers(-2**63, 2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "bool": st.booleans(),
}


@st.composite
def flat_corpus(draw) -> list[str]:
    """Records with 0-3 extra flat columns, each written with its own separators, ASCII
    escapes or raw UTF-8, blanks before the brace; a few with a repeated key or NaN."""
    kinds = draw(st.dictionaries(st.sampled_from(["score", "flag", "note", "n", "\u00e9t\u00e9", "position"]),
                                 st.sampled_from(sorted(FLAT_VALUES)), max_size=3))
    lines = []
    for i in range(draw(st.integers(1, 20))):
        rec = {"id": f"d{i}", "text": draw(st.text(CHARS, max_size=20)) + f" doc {i}"}
        if draw(st.integers(0, 9)):  # an unlabelled record sends its batch to the decoding path
            rec["label"] = draw(st.sampled_from(["a", "b"]))
        for name, kind in kinds.items():
            value = draw(st.one_of(st.none(), st.just(...), FLAT_VALUES[kind]))
            if value is not ...:
                rec[name] = value
        seps = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]))
        line = json.dumps(rec, ensure_ascii=draw(st.booleans()), separators=seps)
        trouble = draw(st.sampled_from([""] * 30 + ["  }"] * 5 + [',"label":"b"}', ',"n":NaN}']))
        lines.append(line[:-1] + trouble if trouble else line)
    return lines


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=flat_corpus(), seed=st.integers(0, 2**16))
def test_property_fast_path_equals_decoding(tmp_path_factory, lines, seed):
    """Whatever the spelling, the batch written equals the decoding path's, value for value
    (NaN equal to NaN), and the Parquet schema is the same."""
    store = store_of(tmp_path_factory.mktemp("w"), lines)
    if len(store) == 0:
        return
    order = np.random.default_rng(seed).permutation(len(store))
    rows, table, policy = decoded(store, order, 0, len(order))
    data, got = ordered_batch(store, order, policy, "label", 0, len(order))
    fast = spliced_batch(store, order, 0, policy, "label", True) is not None
    event("fast path" if fast else "decoded")
    lines_out = data.decode("utf-8").split("\n")  # not splitlines: U+2028 may stand raw in a record
    assert lines_out.pop() == "" and same([json.loads(x) for x in lines_out], rows)
    assert got.schema.equals(table.schema)
    assert same(got.to_pylist(), table.to_pylist())


def same(a, b) -> bool:
    """Equal values of equal types, NaN equal to NaN (Arrow's `equals` and == say no)."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
