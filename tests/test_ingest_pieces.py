"""Parallel ingest (issue 17 item 3) and the batched readers (issue 16 item 2).

The input is cut into pieces (byte ranges of JSON-lines files, runs of Parquet row
groups, files), each read into a store shard; the driver joins the shards. Whatever the
cut, the store files, rejects.jsonl and the counts must be the same as with one piece,
line numbers must be the file's own, and a bad record must cost only itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contextsort.corpus import (
    CorpusReader,
    DocStore,
    DocStoreWriter,
    RecordError,
    Reject,
    plain_blocks,
    plan_pieces,
    parse_input_spec,
    text_hashes,
)
from contextsort.parallel_ingest import ReadOptions, ingest_inputs


def record_lines(lines):
    """The reference for cutting a file into records: lines without a leading UTF-8 BOM, split at
    LF, CRLF and lone CR alike (a raw CR cannot occur inside valid JSON text)."""
    first = True
    for raw in lines:
        if first:
            first = False
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        if b"\r" not in raw:
            yield raw
            continue
        body = raw.rstrip(b"\n")
        if body.endswith(b"\r"):
            body = body[:-1]
        yield from body.split(b"\r")

STORE_FILES = ["records.jsonl", "records.idx.npy", "text.bin", "text.idx.npy", "text_hash.npy", "label_codes.npy",
               "label_names.json", "fields.json"]


@pytest.fixture(scope="module")
def texts():
    """300 distinct real BBC paragraphs."""
    from contextsort.sample import bbc_news_path

    out: list[str] = []
    for p in sorted(bbc_news_path().rglob("*.txt"))[:200]:
        for para in p.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            para = para.strip()
            if len(para) > 40 and para not in out:
                out.append(para)
    return out[:300]


def messy_lines(texts: list[str]) -> tuple[list[bytes], dict[int, str]]:
    """JSON lines with every kind of trouble spread through them; returns the lines and
    {line number: what is wrong} for the lines that must be rejected."""
    lines: list[bytes] = []
    bad: dict[int, str] = {}
    for i, t in enumerate(texts):
        row: dict = {"id": f"d{i}", "text": t, "label": ["a", "b", "c"][i % 3]}
        if i % 17 == 3:
            del row["id"]  # gets its position
        if i % 23 == 5:
            row["id"] = None  # gets its position too
        if i % 29 == 7:
            row["tags"] = [i, i + 1]  # a nested field
        if i % 31 == 9:
            row["id"] = f"d{i - 9}"  # a duplicate id (rejected at close)
        line = json.dumps(row, ensure_ascii=i % 2 == 0).encode()
        if i % 37 == 11:
            line = line[:-5]  # malformed JSON
        elif i % 41 == 13:
            line = line.replace(b'"text"', b'"txet"')  # no text field
        elif i % 43 == 17:
            line = line[:20] + b"\xff" + line[20:]  # invalid UTF-8
        if i % 37 == 11 or i % 41 == 13 or i % 43 == 17:
            bad[len(lines) + 1] = "bad"
        lines.append(line)
        if i % 19 == 0:
            lines.append(b"   ")  # a blank line: numbered, not a record
    return lines, bad


def ingest(paths, out: Path, **kw):
    return ingest_inputs([str(p) for p in paths], out / "store", out / "parts", **kw)


def assert_same_store(a: Path, b: Path) -> None:
    for name in STORE_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def rejects_json(res) -> list[dict]:
    return [r.to_json() for r in res.rejects]


# --------------------------------------------------------------------------- lines


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=60).map(lambda b: bytes(b" a{\r\n\xef\xbb\xbf"[x % 8] for x in b)),
       st.integers(1, 7), st.integers(1, 5))
def test_byte_ranges_cut_lines_as_the_sequential_reader_does(data, pieces, chunk):
    """LF, CRLF, lone CR, a BOM: the lines of all ranges together are the file's lines."""
    import io
    import tempfile

    from contextsort.corpus import line_cuts

    expected = [x.rstrip(b"\n") for x in record_lines(io.BytesIO(data))]
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as fh:
        fh.write(data)
        fh.flush()
        cuts = line_cuts(Path(fh.name), pieces)
        assert cuts[0] == 0 and cuts[-1] == len(data) and all(a < b for a, b in zip(cuts, cuts[1:]) if data)
        assert all(data[c - 1 : c] == b"\n" for c in cuts[1:-1])
        got = [line for a, b in zip(cuts[:-1], cuts[1:]) for block in plain_blocks(Path(fh.name), a, b, chunk)
               for line in block.splitlines()]
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x1fAbZz.\x00é\x85\u2028İ", max_size=12), max_size=8))
def test_batched_text_hashes_equal_the_one_by_one_definition(texts):
    import xxhash

    want = [xxhash.xxh64_intdigest(" ".join(t.split()).lower().encode("utf-8", "surrogatepass")) for t in texts]
    assert text_hashes(texts).tolist() == want


# --------------------------------------------------------------------------- split invariance


@pytest.mark.parametrize("piece_bytes", [2_000, 9_000, 40_000])
def test_many_byte_ranges_give_the_same_store_and_rejects_as_one(tmp_path, texts, piece_bytes):
    lines, bad = messy_lines(texts)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\r\n".join(lines[:100]) + b"\n" + b"\n".join(lines[100:]) + b"\n")
    one = ingest([path], tmp_path / "one")
    many = ingest([path], tmp_path / "many", piece_bytes=piece_bytes)
    assert one.pieces == 1 and many.pieces >= path.stat().st_size // piece_bytes
    assert_same_store(tmp_path / "one" / "store", tmp_path / "many" / "store")
    assert rejects_json(one) == rejects_json(many)
    assert [c.to_json() for c in one.counts] == [c.to_json() for c in many.counts]
    # the sequential reader (one CorpusReader, one writer) stores the same documents
    w = DocStoreWriter(tmp_path / "seq")
    seq_rejects = []
    for item in CorpusReader([path]):
        (seq_rejects.append(item.to_json()) if isinstance(item, Reject) else w.add(item))
    seq_rejects += [r.to_json() for r in w.close()]
    assert_same_store(tmp_path / "seq", tmp_path / "one" / "store")
    assert seq_rejects == rejects_json(one)


def test_bad_lines_in_later_ranges_keep_their_true_line_numbers(tmp_path, texts):
    lines, bad = messy_lines(texts)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    res = ingest([path], tmp_path / "many", piece_bytes=3_000)
    first_cut = 3_000  # every cut is at or after this byte
    late = [n for n in bad if sum(len(x) + 1 for x in lines[: n - 1]) > first_cut]
    assert res.pieces > 5 and len(late) >= 3
    read_rejects = {r.line: r for r in res.rejects if not r.reason.startswith("duplicate id")}
    assert sorted(read_rejects) == sorted(bad)
    for n in bad:  # the line named is the bad line itself
        raw = lines[n - 1]
        rec_ok = True
        try:
            obj = json.loads(raw.decode())
            rec_ok = "text" in obj
        except ValueError:
            rec_ok = False
        assert not rec_ok, (n, raw[:40])
    # a duplicate id names where the first copy was, by its true line
    dups = [r for r in res.rejects if r.reason.startswith("duplicate id")]
    assert dups
    for r in dups:
        first_line = int(r.reason.rsplit(":", 1)[1].rstrip(")"))
        assert json.loads(lines[first_line - 1])["id"] == r.id
        assert json.loads(lines[r.line - 1])["id"] == r.id


def test_ids_from_positions_are_global_across_ranges(tmp_path, texts):
    # no id (the position goes first), a null id after the text (the position takes its place), an id
    rows = [[{"id": f"x{i}", "text": t}, {"text": t}, {"text": t, "id": None}][i % 3] for i, t in enumerate(texts[:120])]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = ingest([path], tmp_path / "many", piece_bytes=4_000)
    assert res.pieces > 3
    store = DocStore(tmp_path / "many" / "store")
    assert [store.record(i)["id"] for i in range(len(store))] == [f"x{i}" if i % 3 == 0 else i for i in range(120)]
    assert [store.text(i) for i in range(len(store))] == texts[:120]
    assert [list(store.record(i)) for i in range(3)] == [["id", "text"], ["id", "text"], ["text", "id"]]
    ingest([path], tmp_path / "one")
    assert_same_store(tmp_path / "one" / "store", tmp_path / "many" / "store")


def test_counts_add_up_over_inputs_and_pieces(tmp_path, texts):
    lines, bad = messy_lines(texts)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"\n".join(lines[:150]) + b"\n")
    b.write_bytes(b"\n".join(lines[150:]) + b"\n")
    res = ingest([a, b], tmp_path / "run", piece_bytes=5_000)
    blank = sum(1 for x in lines if not x.strip())
    assert res.records_read == len(lines) - blank
    assert sum(c.records for c in res.counts) == res.records_read
    assert sum(c.documents + c.rejected for c in res.counts) == res.records_read
    dups = sum(1 for r in res.rejects if r.reason.startswith("duplicate id"))
    assert res.writer.n + len(res.rejects) == res.records_read
    assert sum(c.rejected for c in res.counts) == len(res.rejects) - dups
    assert len(DocStore(tmp_path / "run" / "store")) == res.writer.n


def test_strict_names_the_true_line_of_the_first_bad_record(tmp_path, texts):
    rows = [json.dumps({"id": i, "text": t}) for i, t in enumerate(texts[:200])]
    rows[150] = json.dumps({"id": 150, "body": "no text"})
    rows[170] = "{broken"
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(rows) + "\n")
    for piece_bytes in (None, 3_000):
        with pytest.raises(RecordError) as e:
            ingest([path], tmp_path / f"s{piece_bytes}", opts=ReadOptions(strict=True), piece_bytes=piece_bytes)
        assert str(e.value).startswith(f"{path}:151: field 'text': missing text field")


# --------------------------------------------------------------------------- Parquet


def test_a_bad_parquet_row_costs_only_itself_in_a_multi_row_group_file(tmp_path, texts):
    raw = [t.encode() for t in texts[:100]]
    raw[57] = b"broken \xff\xfe utf-8"  # row 58, in row group 5 (rows 51-60)
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": list(range(100)), "text": pa.array(raw, pa.binary()), "n": [float(i) for i in range(100)]}),
                   path, row_group_size=10)
    one = ingest([path], tmp_path / "one")
    many = ingest([path], tmp_path / "many", rows_per_piece=20)
    assert one.pieces == 1 and many.pieces == 5
    assert_same_store(tmp_path / "one" / "store", tmp_path / "many" / "store")
    assert rejects_json(one) == rejects_json(many)
    assert [(r.line, r.reason) for r in many.rejects] == [(58, "field 'text': invalid UTF-8 at byte 7")]
    store = DocStore(tmp_path / "many" / "store")
    assert [store.record(i)["id"] for i in range(len(store))] == [i for i in range(100) if i != 57]
    assert [store.text(i) for i in range(len(store))] == [t for i, t in enumerate(texts[:100]) if i != 57]
    assert many.counts[0].to_json() == {"input": str(path), "records": 100, "documents": 99, "rejected": 1}


def test_pieces_follow_the_sequential_reading_order(tmp_path, texts):
    """A folder of mixed files: .txt runs, Parquet row-group runs and JSONL ranges, in sorted order."""
    d = tmp_path / "corpus"
    (d / "sport").mkdir(parents=True)
    for i in range(5):
        (d / "sport" / f"{i}.txt").write_text(texts[i])
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(40)], "text": texts[10:50]}), d / "m.parquet", row_group_size=8)
    (d / "n.jsonl").write_text("".join(json.dumps({"id": f"j{i}", "text": t}) + "\n" for i, t in enumerate(texts[50:150])))
    pieces = plan_pieces([parse_input_spec(d)], piece_bytes=3_000, rows_per_piece=16)
    assert [p.kind for p in pieces][:4] == ["parquet", "parquet", "parquet", "lines"] and pieces[-1].kind == "txt"
    ingest([d], tmp_path / "one")
    many = ingest([d], tmp_path / "many", piece_bytes=3_000, rows_per_piece=16)
    assert many.pieces == len(pieces) > 6
    assert_same_store(tmp_path / "one" / "store", tmp_path / "many" / "store")
    store = DocStore(tmp_path / "many" / "store")
    assert [store.record(i)["id"] for i in range(len(store))] == (
        [f"p{i}" for i in range(40)] + [f"j{i}" for i in range(100)] + [f"sport/{i}.txt" for i in range(5)])


# --------------------------------------------------------------------------- the stored record


def test_records_are_stored_as_their_input_line_and_read_back_the_same(tmp_path, texts):
    """An unchanged JSONL record is stored as its own line (no re-encoding); one that changed
    (a position id, a mapped field) as its fields' JSON. DocStore.record decodes either."""
    rows = [{"id": 7, "text": texts[0], "x": 1.5e300}, {"text": texts[1]}, {"id": "a", "content": texts[2]}]
    p1 = tmp_path / "a.jsonl"
    p1.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1]) + "\n")
    p2 = tmp_path / "b.jsonl"
    p2.write_text(json.dumps(rows[2]) + "\n")
    res = ingest([p1, f"{p2}:text=content"], tmp_path / "run")
    assert not res.rejects
    store = DocStore(tmp_path / "run" / "store")
    stored = (tmp_path / "run" / "store" / "records.jsonl").read_bytes().splitlines()
    assert stored[0] == json.dumps(rows[0]).encode()  # as written (ASCII escapes kept)
    assert stored[1] == json.dumps({"id": 1, "text": texts[1]}, ensure_ascii=False).encode()
    assert store.record(0) == rows[0]
    assert store.record(1) == {"id": 1, "text": texts[1]}  # its position among the records read
    assert store.record(2) == {"id": "a", "text": texts[2]}


# --------------------------------------------------------------------------- Ray


@pytest.mark.ray
def test_ray_ingest_runs_pieces_as_tasks_and_builds_the_local_store(tmp_path, texts, monkeypatch):
    """Byte ranges and row-group runs as Ray tasks: the same store, rejects and counts as in one
    process; then the ingest stage of a run under --engine ray cuts its input the same way."""
    pytest.importorskip("ray")
    import contextsort
    from contextsort import parallel_ingest
    from contextsort.config import Config
    from contextsort.engines.ray import RayEngine, RaySession

    lines, bad = messy_lines(texts)
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    raw = [t.encode() for t in texts[:80]]
    raw[33] = b"bad \xff utf-8"
    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(80)], "text": pa.array(raw, pa.binary())}), parquet, row_group_size=10)
    local = ingest([jsonl, parquet], tmp_path / "local")
    with RaySession(num_cpus=2, quiet=True):
        engine = RayEngine()
        res = ingest([jsonl, parquet], tmp_path / "ray", mapper=engine.map, piece_bytes=4_000, rows_per_piece=20)
        assert engine.take_node_ids()
        assert res.pieces >= 10 and res.piece_kinds == {"lines": res.pieces - 4, "parquet": 4}
        assert_same_store(tmp_path / "local" / "store", tmp_path / "ray" / "store")
        assert rejects_json(local) == rejects_json(res) and len(res.rejects) > len(bad)
        assert [c.to_json() for c in local.counts] == [c.to_json() for c in res.counts]

        monkeypatch.setattr(parallel_ingest, "MIN_PIECE_BYTES", 4_000)
        cfg = Config()
        cfg.engine.name = "ray"
        run = contextsort.run([jsonl], tmp_path / "run", cfg)
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    ingest_rec = man["stages"]["ingest"]
    assert ingest_rec["engine"] == "ray" and ingest_rec["pieces"] > 1 and ingest_rec["node_ids"]
    one = ingest([jsonl], tmp_path / "one")
    assert_same_store(tmp_path / "one" / "store", tmp_path / "run" / "store")
    assert run.counts["rejected"] == len(one.rejects)
