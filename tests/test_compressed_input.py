"""Compressed JSON lines (.gz, .zst) take the same block path as plain files.

A compressed input is decompressed by hand (`corpus.decompressed_chunks`) and regrouped
into blocks of whole lines (`corpus.line_blocks`), so it must give exactly the store and
the rejects (same lines, same reasons) of the same bytes uncompressed, whatever the
member / frame and block boundaries; a truncated or corrupt file keeps every whole line
before the damage and rejects the rest with its line number, never failing the run.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

import pytest
import zstandard

from contextsort import corpus
from contextsort.corpus import DocStore
from contextsort.parallel_ingest import ingest_inputs


def lines_with_trouble() -> list[bytes]:
    """Good records with, among them: a malformed line, a blank text, a record without an id,
    an exact duplicate, a CRLF ending, a blank line, non-ASCII text."""
    lines = []
    for i in range(900):
        text = f"Report {i} on caf\u00e9 prices \u00a3{i % 7} and \"quotes\" " * (1 + i % 5)
        lines.append(json.dumps({"id": f"r{i}", "label": "ab"[i % 2], "text": text}, ensure_ascii=i % 3 == 0).encode())
    lines[100] = b'{"id": "bad", "text": "unterminated}'
    lines[101] = json.dumps({"id": "blank", "text": " \t"}).encode()
    lines[400] = json.dumps({"text": "no id here"}).encode()
    lines[650] = json.dumps({"id": "again", "text": lines[5].decode().split('"text": "')[1][:-2]}).encode()
    lines[700] = lines[700] + b"\r"  # a CRLF line
    lines[800] = b""  # a blank line
    return lines


def compress_in_parts(data: bytes, kind: str, parts: int) -> bytes:
    """Several gzip members / zstd frames, cut at arbitrary bytes (not at line ends)."""
    comp = gzip.compress if kind == "gz" else zstandard.ZstdCompressor().compress
    step = -(-len(data) // parts)
    return b"".join(comp(data[i : i + step]) for i in range(0, len(data), step))


def ingest(path: Path, out: Path):
    res = ingest_inputs([str(path)], out / "store", out / "parts")
    store = DocStore(out / "store")
    docs = [(store.record(i), store.text(i)) for i in range(len(store))]
    rejects = sorted((r.to_json()["line"], r.to_json()["reason"]) for r in res.rejects)
    return docs, rejects, res.records_read


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of about 4 KB from 64 compressed bytes at a time: many blocks, members and frames
    that end inside a block, blocks that end inside a member."""
    monkeypatch.setattr(corpus, "line_blocks", functools.partial(corpus.line_blocks, size=4096))
    monkeypatch.setattr(corpus, "decompressed_chunks", functools.partial(corpus.decompressed_chunks, chunk=64))


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_compressed_jsonl_is_read_as_its_plain_bytes(tmp_path, monkeypatch, small_blocks, kind):
    data = b"\xef\xbb\xbf" + b"\n".join(lines_with_trouble())  # a BOM; the last line has no LF
    plain = tmp_path / "in.jsonl"
    plain.write_bytes(data)
    packed = tmp_path / f"in.jsonl.{kind}"
    packed.write_bytes(compress_in_parts(data, kind, parts=40))
    fast = []  # blocks the columnar path took whole
    real = corpus.json_lines_block

    def counting(*args):
        block = real(*args)
        fast.append(block is not None)
        return block

    monkeypatch.setattr(corpus, "json_lines_block", counting)
    want = ingest(plain, tmp_path / "plain")
    fast.clear()
    got = ingest(packed, tmp_path / kind)
    assert got == want
    docs, rejects, read = got
    assert len(docs) + len(rejects) == read and read == 899  # every line but the blank one
    assert [line for line, _ in rejects] == [101, 102]  # the malformed line and the blank text; no id is allowed
    assert len(fast) >= 30 and sum(fast) >= len(fast) - 6  # every block but those with one of the 6 bad lines: columnar


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_corrupt_compressed_data_keeps_the_lines_before_it(tmp_path, small_blocks, kind):
    lines = lines_with_trouble()[:600]
    head = b"\n".join(lines[:300]) + b"\n"
    good = compress_in_parts(head, kind, parts=3)
    rest = compress_in_parts(b"\n".join(lines[300:]) + b"\n", kind, parts=1)
    # the next member's deflate data zeroed (an invalid stored block) / the next frame's
    # descriptor and data set to 0xff (a reserved bit): corrupt, not truncated
    keep, junk = (10, b"\0") if kind == "gz" else (4, b"\xff")
    path = tmp_path / f"in.jsonl.{kind}"
    path.write_bytes(good + rest[:keep] + junk * 200 + rest[keep + 200 :])
    before = tmp_path / "head.jsonl"
    before.write_bytes(head)
    want_docs, want_rejects, _ = ingest(before, tmp_path / "head")
    docs, rejects, read = ingest(path, tmp_path / "run")
    assert docs == want_docs  # every line before the damage, as read from the plain bytes
    assert [r for r in rejects if r not in want_rejects] == [(301, rejects[-1][1])]
    assert "unreadable file from this line on" in rejects[-1][1] and "corrupt" in rejects[-1][1]
    assert len(docs) + len(rejects) == read


def test_zero_padding_between_gzip_members_is_read_as_gzip_does(tmp_path):
    lines = lines_with_trouble()[200:260]
    body = b"\n".join(lines) + b"\n"
    data = gzip.compress(body[:3000]) + b"\0" * 64 + gzip.compress(body[3000:]) + b"\0" * 16
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(data)
    with gzip.open(path, "rb") as fh:
        assert fh.read() == body
    assert b"".join(corpus.decompressed_chunks(path)) == body
    docs, rejects, read = ingest(path, tmp_path / "run")
    assert len(docs) == 60 and not rejects and read == 60


@pytest.mark.parametrize("kind", ["json", "json.gz", "json.zst"])
def test_json_array_on_one_line_reads_like_json_lines(tmp_path, small_blocks, kind):
    lines = lines_with_trouble()[200:330]
    objs = [json.loads(x) for x in lines if x.strip().startswith(b"{") and x.strip().endswith(b"}")]
    data = b"\xef\xbb\xbf" + json.dumps(objs).encode()  # a BOM, then the whole array on one line
    path = tmp_path / f"in.{kind}"
    path.write_bytes(data if kind == "json" else compress_in_parts(data, kind.split(".")[1], parts=9))
    want = tmp_path / "want.jsonl"
    want.write_bytes(b"\n".join(json.dumps(o).encode() for o in objs) + b"\n")
    docs, rejects, read = ingest(path, tmp_path / "run")
    want_docs, want_rejects, want_read = ingest(want, tmp_path / "want")
    assert [text for _, text in docs] == [text for _, text in want_docs] and len(docs) > 100
    assert [rec["id"] for rec, _ in docs] == [rec["id"] for rec, _ in want_docs]
    assert read == want_read and len(rejects) == len(want_rejects)


def test_holds_array_whatever_the_pieces(tmp_path, monkeypatch):
    path = tmp_path / "in.json"
    for data, want in [(b"\xef\xbb\xbf \n\t [{\"a\": 1}]", True), (b"\xef\xbb\xbf{\"a\": 1}\n", False), (b" [", True),
                       (b"[", True), (b"\n\n", False), (b"", False), (b"\xef\xbb\xbf", False)]:
        path.write_bytes(data)
        assert corpus.CorpusReader.holds_array(path) is want
        # the same bytes handed over one at a time: a BOM cut across pieces is still a BOM
        monkeypatch.setattr(corpus, "file_chunks", lambda p, chunk=0: (bytes([b]) for b in p.read_bytes()))
        assert corpus.CorpusReader.holds_array(path) is want
        monkeypatch.undo()


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "jsonl.zst"])
def test_a_record_longer_than_many_blocks(tmp_path, monkeypatch, small_blocks, kind):
    """A record of many blocks' length (a book in a pretraining corpus) is one record, whole."""
    monkeypatch.setattr(corpus, "plain_blocks", functools.partial(corpus.plain_blocks, chunk=4096))
    lines = lines_with_trouble()[200:240]
    long_text = " ".join(f"word{k}" for k in range(60_000))  # about 0.5 MB: over a hundred 4 KB blocks
    lines.insert(20, json.dumps({"id": "book", "label": "a", "text": long_text}).encode())
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / f"in.{kind}"
    path.write_bytes(data if kind == "jsonl" else compress_in_parts(data, kind.split(".")[1], parts=3))
    docs, rejects, read = ingest(path, tmp_path / "run")
    assert not rejects and read == len(lines) == len(docs)
    assert [text for rec, text in docs if rec["id"] == "book"] == [long_text]
