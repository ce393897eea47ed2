"""Issue 12, input side: every record's fate is decided at ingest, and written without failing.

One test (or group) per numbered item: 4 Parquet per-row decoding, 5 content
fingerprints / `position` / null ids, 6 dedup without chaining, 8 mixed types and
the Parquet schema policy, 11 special files and line endings, 12 per-input field
mapping and counts; then a hypothesis property over random mixes of good and bad
JSONL records (each record ends in exactly one of stored documents / rejects).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contextsort
from contextsort.config import Config
from contextsort.corpus import (
    CorpusReader,
    DocStore,
    DocStoreWriter,
    InputError,
    Record,
    Reject,
    fingerprint_inputs,
    parse_input_spec,
)
from contextsort.dedup import find_duplicates


def read_all(paths, **kw):
    reader = CorpusReader(paths, **kw)
    items = list(reader)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)], reader


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def articles():
    """60 distinct real BBC articles (id, text, label)."""
    from contextsort.sample import bbc_news_path

    root = bbc_news_path()
    seen, out = set(), []
    for p in sorted(root.rglob("*.txt"))[::7]:
        text = p.read_text(encoding="utf-8", errors="replace")
        if text not in seen:
            seen.add(text)
            out.append({"id": p.relative_to(root).as_posix(), "text": text, "label": p.parent.name})
    return out[:60]


# --------------------------------------------------------------------------- item 4: Parquet


def test_parquet_binary_text_is_decoded_per_row(tmp_path):
    texts = [f"document number {i}".encode() for i in range(6)]
    texts[3] = b"bad \xff\xfe bytes"
    for typ in (pa.binary(), pa.large_binary()):
        path = tmp_path / f"{typ}.parquet"
        pq.write_table(pa.table({"id": list(range(6)), "text": pa.array(texts, typ)}), path)
        recs, rejs, reader = read_all([path])
        assert [r.text for r in recs] == [t.decode() for i, t in enumerate(texts) if i != 3]
        assert [(r.line, r.reason) for r in rejs] == [(4, "field 'text': invalid UTF-8 at byte 4")]
        assert reader.counts[0].records == 6


def _patched_parquet(path: Path, texts: list[str], marker: str, replace: bytes, row_group_size: int) -> None:
    """A Parquet file whose bytes at `marker` (PLAIN, uncompressed, no statistics) are replaced by `replace`."""
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), path, compression="none",
                   use_dictionary=False, write_statistics=False, row_group_size=row_group_size)
    data = path.read_bytes()
    old = len(marker).to_bytes(4, "little") + marker.encode()
    assert data.count(old) == 1 and len(replace) == len(old)
    path.write_bytes(data.replace(old, replace))


def test_parquet_invalid_utf8_in_a_string_column_rejects_only_its_row(tmp_path):
    texts = [f"good text {i:04d}" for i in range(10)]
    texts[6] = "BADBADBAD"
    path = tmp_path / "s.parquet"
    _patched_parquet(path, texts, "BADBADBAD", (9).to_bytes(4, "little") + b"BAD\xff\xfeBAD!", row_group_size=4)
    recs, rejs, reader = read_all([path])
    assert len(recs) == 9 and [r.line for r in rejs] == [7] and "invalid UTF-8" in rejs[0].reason
    assert reader.counts[0].records == 10


def test_parquet_undecodable_row_group_rejects_that_group_only(tmp_path):
    texts = [f"good text {i:04d}" for i in range(10)]
    texts[5] = "BADBADBAD"  # in row group 1 (rows 5-8)
    path = tmp_path / "g.parquet"
    _patched_parquet(path, texts, "BADBADBAD", b"\xff\xff\xff\x7f" + b"BADBADBAD", row_group_size=4)
    recs, rejs, reader = read_all([path])
    assert [r.line for r in recs] == [1, 2, 3, 4, 9, 10]
    assert [r.line for r in rejs] == [5, 6, 7, 8]
    assert all("row group 1 (4 rows left unread)" in r.reason for r in rejs)
    assert reader.counts[0].records == 10 and reader.counts[0].rejected == 4


# --------------------------------------------------------------------------- item 5: fingerprint, position, null id


def test_fingerprint_sees_an_edit_that_keeps_size_and_mtime(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "alpha"}\n')
    st = path.stat()
    before = fingerprint_inputs([path])
    path.write_text('{"text": "omega"}\n')
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert fingerprint_inputs([path]) != before
    # the field mapping is part of an input's identity
    assert fingerprint_inputs([f"{path}:text=body"]) != fingerprint_inputs([path])


def test_null_id_gets_its_position_like_a_missing_id(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "x", "text": "one"}\n{"id": null, "text": "two"}\n{"text": "three"}\n')
    recs, rejs, _ = read_all([path])
    assert [r.id for r in recs] == ["x", 1, 2] and [r.fields["id"] for r in recs] == ["x", 1, 2]


# --------------------------------------------------------------------------- item 6: dedup without chaining


def test_dedup_does_not_chain():
    # 0 ~ 1 and 1 ~ 2 above the threshold, 0 ~ 2 below it: 1 names 0, and 2 is kept
    ids = np.array([[1, 2], [0, 2], [1, 0]])
    sims = np.array([[0.98, 0.90], [0.98, 0.98], [0.98, 0.90]], dtype=np.float32)
    assert find_duplicates(ids, sims, 0.97).tolist() == [-1, 0, -1]


def _sim(ids, sims, a, b):
    """Largest similarity of the pair in either kNN list (-inf if not linked)."""
    s = [sims[a, j] for j in range(ids.shape[1]) if ids[a, j] == b] + [sims[b, j] for j in range(ids.shape[1]) if ids[b, j] == a]
    return max(s) if s else -np.inf


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    k=st.integers(1, 6),
    seed=st.integers(0, 10**6),
    threshold=st.sampled_from([0.5, 0.8, 0.95]),
    use_hash=st.booleans(),
)
def test_property_removed_documents_are_within_threshold_of_a_kept_one(n, k, seed, threshold, use_hash):
    rng = np.random.default_rng(seed)
    ids = rng.integers(-1, n, size=(n, k))
    sims = rng.uniform(0.3, 1.0, size=(n, k)).astype(np.float32)
    hashes = rng.integers(0, max(1, n // 3), size=n).astype(np.uint64) if use_hash else None
    valid = rng.random(n) > 0.1
    dup_of = find_duplicates(ids, sims, threshold, hashes, valid)
    kept = (dup_of < 0) & valid
    assert (dup_of[~valid] == -1).all()
    for i in np.flatnonzero(dup_of >= 0):
        j = int(dup_of[i])
        assert valid[i] and kept[j] and j < i  # names an earlier document that is kept
        if hashes is not None and hashes[i] == hashes[j]:
            continue
        if _sim(ids, sims, i, j) >= threshold:
            continue
        # an exact copy of an earlier document r that was itself removed naming j
        r = min(t for t in range(n) if valid[t] and hashes is not None and hashes[t] == hashes[i])
        assert r != i and dup_of[r] == j and _sim(ids, sims, r, j) >= threshold
    # kept documents: none is within the threshold of an earlier kept one, no two share a hash
    for i in np.flatnonzero(kept):
        for j in np.flatnonzero(kept[:i]):
            assert _sim(ids, sims, i, j) < threshold
            assert hashes is None or hashes[i] != hashes[j]


# --------------------------------------------------------------------------- item 8: mixed types


def test_mixed_types_are_decided_at_ingest_and_written_without_failing(tmp_path, articles):
    a = articles
    lines = [
        {"id": 1, "text": a[0]["text"], "label": "sport", "extra": 5, "position": "user's own"},
        {"id": "1", "text": a[1]["text"], "label": 3, "extra": "five", "score": 2**70},
        {"text": a[2]["text"], "label": None, "extra": [1, "x"], "score": 7},  # no id among string ids
        {"id": "big", "text": a[3]["text"], "extra": {"k": True}, "score": -(2**64)},
        {"id": "sur", "text": a[4]["text"] + " \ud800"},  # lone surrogate: rejected at ingest
        {"id": "sur2", "text": a[5]["text"], "note": "\udfff"},
    ] + [{"id": f"r{i}", "text": r["text"], "label": r["label"]} for i, r in enumerate(a[6:20])]
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in lines) + "\n")  # json.dumps escapes the surrogates
    n_pq = 8
    pq_src = tmp_path / "cols.parquet"
    pq.write_table(pa.table({
        "id": [f"p{i}" for i in range(n_pq)],
        "text": [r["text"] for r in a[20:20 + n_pq]],
        "big": pa.array([2**64 - 1 - i for i in range(n_pq)], pa.uint64()),
        "kv": pa.array([[("a", i)] for i in range(n_pq)], pa.map_(pa.string(), pa.int64())),
    }), pq_src)
    cfg = Config()
    cfg.dedup.threshold = 2.0  # keep every document: this test is about fields
    res = contextsort.run([src, pq_src], tmp_path / "run", cfg)
    c = res.counts
    assert c["records_read"] == len(lines) + n_pq and c["rejected"] == 2 and c["adds_up"]
    removed = read_jsonl(tmp_path / "run" / "removed.jsonl")
    assert sorted((r["id"], r["reason"]) for r in removed) == [
        ("sur", "rejected: field 'text' holds a lone surrogate escape (not valid Unicode)"),
        ("sur2", "rejected: field 'note' holds a lone surrogate escape (not valid Unicode)"),
    ]
    out = read_jsonl(tmp_path / "run" / "ordered.jsonl")
    table = pq.read_table(tmp_path / "run" / "ordered.parquet")
    assert len(out) == table.num_rows == c["kept"] == len(lines) + n_pq - 2
    # the user's `position` survives; the order's position is in contextsort_position
    assert [r["contextsort_position"] for r in out] == list(range(len(out)))
    assert [r.get("position") for r in out].count("user's own") == 1
    assert table.column("contextsort_position").to_pylist() == list(range(len(out)))
    # ids 1 and "1" are distinct documents in both formats (and not duplicate ids)
    ids_jsonl = [r["id"] for r in out]
    assert 1 in ids_jsonl and "1" in ids_jsonl and 2 in ids_jsonl  # the id-less record got its position
    ids_pq = [json.loads(v) for v in table.column("id").to_pylist()]
    assert ids_pq == ids_jsonl
    # every converted field reads back as the JSONL value; the writer said which and why
    info = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["write"]
    conv = info["converted_fields"]
    assert set(conv) == {"id", "label", "extra", "score", "big", "kv"}
    assert info["position_field"] == "contextsort_position"
    for name in conv:
        assert [None if v is None else json.loads(v) for v in table.column(name).to_pylist()] == [r.get(name) for r in out]
    assert table.schema.field("text").type == pa.string()


# --------------------------------------------------------------------------- item 11: special files, line endings


@pytest.fixture
def alarm():
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""
    def boom(*_):
        raise TimeoutError("reader blocked")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_special_files_are_rejected_not_skipped(tmp_path, alarm):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "good.jsonl").write_text('{"id": "g", "text": "fine"}\n')
    os.mkfifo(d / "pipe.jsonl")
    os.symlink(d / "nowhere.jsonl", d / "dangling.jsonl")
    os.symlink(d / "loop.jsonl", d / "loop.jsonl")
    recs, rejs, _ = read_all([d])
    assert [r.id for r in recs] == ["g"]
    assert {Path(r.source).name: r.reason for r in rejs} == {
        "dangling.jsonl": f"broken symbolic link (to {d / 'nowhere.jsonl'})",
        "loop.jsonl": "symbolic link loop",
        "pipe.jsonl": "not a regular file (FIFO)",
    }
    # given directly: the FIFO is rejected at once (never opened), the loop named as such
    recs, rejs, _ = read_all([d / "pipe.jsonl", d / "loop.jsonl"])
    assert [r.reason for r in rejs] == ["not a regular file (FIFO)", "symbolic link loop"]
    with pytest.raises(InputError, match="symbolic link loop"):
        list(CorpusReader([d / "loop.jsonl"], strict=True))
    assert fingerprint_inputs([d]) != fingerprint_inputs([d / "good.jsonl"])  # and it does not hang either


def test_bom_cr_lines_json_arrays_and_null_text(tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"id": "a", "text": "first"}\n{"id": "b", "text": "second"}\n')
    cr = tmp_path / "cr.jsonl"
    cr.write_bytes(b'{"id": "c1", "text": "x"}\r{"id": "c2", "text": "y"}\r\r{"id": "c3", "text": "z"}\r')
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(b'{"id": "d1", "text": "x"}\r\n{"id": "d2", "text": null}\r\n')
    arr = tmp_path / "arr.json"
    arr.write_text('[\n  {"id": "e1", "text": "one"},\n  {"id": "e2",\n   "text": "two"},\n  [1],\n  {"id": "e4", "text": "four"}\n]\n')
    recs, rejs, reader = read_all([bom, cr, crlf, arr])
    assert [(r.id, r.line) for r in recs] == [("a", 1), ("b", 2), ("c1", 1), ("c2", 2), ("c3", 4), ("d1", 1),
                                               ("e1", 2), ("e2", 3), ("e4", 6)]
    assert [(r.id, r.line, r.reason) for r in rejs] == [
        ("d2", 2, "text field 'text' is null"),
        (None, 5, "JSON value is a list, not an object"),
    ]
    assert [c.records for c in reader.counts] == [2, 3, 2, 4]
    bad = tmp_path / "broken.json"
    bad.write_text('[{"id": "f1", "text": "ok"},\n {"id": "f2", "text": }]')
    recs, rejs, _ = read_all([bad])
    assert [r.id for r in recs] == ["f1"] and rejs[0].line == 2 and "the rest of the file is unread" in rejs[0].reason


# --------------------------------------------------------------------------- item 12: per-input fields and counts


def test_input_spec_parsing(tmp_path):
    s = parse_input_spec("data.jsonl:text=content,id=doc_id,label=cat")
    assert s.path == Path("data.jsonl") and s.fields == {"text": "content", "id": "doc_id", "label": "cat"}
    for plain in ("data.jsonl", "a:b.jsonl", "dir/x:y=z", "s3:bucket/f.jsonl", "f.jsonl:text=", "f.jsonl:text=a:b"):
        assert parse_input_spec(plain).path == Path(plain) and parse_input_spec(plain).fields == {}
    odd = tmp_path / "odd:text=body"  # an existing path is a path, even when it looks like a mapping
    odd.write_text("")
    assert parse_input_spec(str(odd)).path == odd
    with pytest.raises(InputError, match="mapped twice"):
        parse_input_spec("f.jsonl:text=a,text=b")


def test_each_input_maps_its_own_fields_and_is_counted(tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_text('{"id": "a1", "text": "alpha"}\n')
    b = tmp_path / "b.jsonl"
    b.write_text('{"doc_id": "b1", "content": "beta", "cat": "x"}\n{"doc_id": "b2", "content": "gamma", "text": "clash"}\n')
    c = tmp_path / "c.jsonl"
    c.write_text('{"id": "c1", "body": "wrong field"}\n')
    recs, rejs, reader = read_all([a, f"{b}:text=content,id=doc_id,label=cat", c, tmp_path / "missing.jsonl"])
    assert [(r.id, r.text) for r in recs] == [("a1", "alpha"), ("b1", "beta")]
    assert recs[1].fields == {"id": "b1", "text": "beta", "label": "x"}  # stored under the run's names
    assert [r.reason for r in rejs] == [
        "field 'text' clashes with this input's mapping of 'content' to 'text'",
        "missing text field 'text' (record has fields: id, body)",
        "no such file or directory",
    ]
    assert [(c.records, c.documents, c.rejected) for c in reader.counts] == [(1, 1, 0), (2, 1, 1), (1, 0, 1), (1, 0, 1)]
    # the store keeps the mapped record under the run's names, labels included
    w = DocStoreWriter(tmp_path / "store")
    for r in recs:
        w.add(r)
    w.close()
    assert DocStore(tmp_path / "store").labels == [None, "x"]
    # strict: an input that yields no document is an error naming it
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError, match="empty.jsonl: input yielded no document"):
        list(CorpusReader([a, empty], strict=True))


# --------------------------------------------------------------------------- property: every record accounted for

GOOD = st.fixed_dictionaries({"text": st.text(min_size=1, max_size=30).filter(lambda t: t.strip())},
                             optional={"label": st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3)),
                                       "extra": st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=3),
                                                          st.lists(st.integers(), max_size=2), st.booleans())})
BAD = st.sampled_from([
    ("malformed", b'{"id": "x", "text": '),
    ("no_text", b'{"body": "x"}'),
    ("null_text", b'{"text": null}'),
    ("int_text", b'{"text": 3}'),
    ("blank", b'{"text": "  "}'),
    ("bad_utf8", b'{"text": "\xff"}'),
    ("surrogate", b'{"text": "a \\ud800 b"}'),
    ("list", b"[1, 2]"),
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(st.one_of(st.tuples(st.just("good"), GOOD), st.tuples(st.just("bad"), BAD)), max_size=25),
    id_kinds=st.lists(st.sampled_from(["str", "int", "none", "null", "dup"]), min_size=25, max_size=25),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    bom=st.booleans(),
)
def test_property_every_record_is_stored_or_rejected(tmp_path_factory, items, id_kinds, newline, bom):
    lines, expect = [], []  # expect: (line, True for stored)
    for n, ((kind, value), idk) in enumerate(zip(items, id_kinds), start=1):
        if kind == "good":
            rec = dict(value)
            if idk == "str":
                rec["id"] = f"s{n}"
            elif idk == "int":
                rec["id"] = 10_000 + n
            elif idk == "null":
                rec["id"] = None
            elif idk == "dup" and n > 1:
                rec["id"] = "dup"  # every later one is a duplicate id
            lines.append(json.dumps(rec).encode())
            expect.append((n, True))
        else:
            lines.append(value[1])
            expect.append((n, False))
    d = tmp_path_factory.mktemp("mix")
    path = d / "in.jsonl"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + newline.join(lines) + (newline if lines else b""))
    reader = CorpusReader([path])
    w = DocStoreWriter(d / "store")
    stored, rejected = [], []
    for item in reader:
        (rejected if isinstance(item, Reject) else stored).append(item)
        if isinstance(item, Record):
            w.add(item)
    id_rejects = w.close()
    assert [r.line for r in stored] == [n for n, ok in expect if ok]
    assert [r.line for r in rejected] == [n for n, ok in expect if not ok]
    dup_lines = [r.line for r in id_rejects]
    assert all("duplicate id 'dup'" in r.reason for r in id_rejects)
    store = DocStore(d / "store")
    assert len(store) + len(dup_lines) + len(rejected) == len(lines) == reader.counts[0].records
    kept = [r for r in stored if r.line not in dup_lines]
    assert [store.record(i)["id"] for i in range(len(store))] == [r.id for r in kept]
    assert [store.text(i) for i in range(len(store))] == [r.text for r in kept]
    keys = [json.dumps(store.record(i)["id"]) for i in range(len(store))]
    assert len(set(keys)) == len(keys)


def test_linked_folders_are_read_once_and_loops_reported(tmp_path, alarm):
    data = tmp_path / "data"
    (data / "part").mkdir(parents=True)
    (data / "part" / "a.jsonl").write_text('{"id": "a", "text": "first"}\n')
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "own.jsonl").write_text('{"id": "o", "text": "own"}\n')
    os.symlink(data, d / "linked")  # a folder reached only through a link: read
    os.symlink(data, d / "linked_again")  # the same folder a second time: reported, not read twice
    os.symlink(d, d / "linked" / "back")  # a loop back to the input folder: reported, no hang
    recs, rejs, _ = read_all([d])
    assert sorted(r.id for r in recs) == ["a", "o"]
    reasons = {Path(r.source).name: r.reason for r in rejs}
    assert set(reasons) == {"linked_again", "back"}
    assert all("the same folder as" in why for why in reasons.values())
