"""Pipelined ingest (prefetch.py) and the store's early write-back and joint fsyncs (atomic.py).

The reader runs in a thread ahead of the store writer: the consumer must see the very
items, in order, with an error of the reader coming after the items before it; stopping
early must stop the thread. A store ingested pipelined must be byte for byte the serial
one, on inputs of many blocks with rejects, exact duplicates and duplicate ids that fall
in other blocks than their first copy.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contextsort import atomic, corpus
from contextsort.corpus import DocStore, RecordBlock
from contextsort.errors import ResourceError
from contextsort.parallel_ingest import ReadOptions, ingest_inputs
from contextsort.prefetch import prefetched


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "contextsort-prefetch"]


@pytest.mark.parametrize("batch,depth", [(1, 1), (3, 2), (1024, 2)])
def test_items_come_in_order(batch, depth):
    items = list(range(1000)) + ["big", 5, "big"]
    assert list(prefetched(iter(items), depth=depth, batch=batch, big=str)) == items
    assert not prefetch_threads()


def test_an_error_comes_after_the_items_before_it():
    def source():
        yield from range(10)
        raise ValueError("line 11 is bad")

    got = []
    with pytest.raises(ValueError, match="line 11 is bad"):
        for item in prefetched(source(), batch=4):
            got.append(item)
    assert got == list(range(10)) and not prefetch_threads()


def test_stopping_early_stops_the_thread_and_it_never_runs_far_ahead():
    produced = []

    def source():
        for i in range(100_000):
            produced.append(i)
            yield i

    gen = prefetched(source(), depth=2, batch=10)
    assert [next(gen) for _ in range(5)] == list(range(5))
    gen.close()
    assert not prefetch_threads()
    assert len(produced) <= 10 * (2 + 2) + 1  # the list handed over, `depth` queued, one being filled


def test_a_consumer_error_stops_the_thread():
    with pytest.raises(KeyError):
        for item in prefetched(iter(range(10_000)), batch=7):
            if item == 50:
                raise KeyError(item)
    assert not prefetch_threads()


def store_digest(store: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(store.iterdir())}


def planted_lines() -> list[bytes]:
    """Good records with, far apart: exact duplicates (case, spacing), duplicate ids, a malformed line,
    a blank text, a record without id, non-ASCII texts."""
    lines = []
    for i in range(1200):
        text = f"Article {i} about caf\u00e9 prices \u00a3{i % 7} and \"quotes\" " * (1 + i % 4)
        lines.append(json.dumps({"id": f"d{i}", "label": ["x", "y"][i % 2], "text": text}, ensure_ascii=i % 3 == 0).encode())
    lines[700] = json.dumps({"id": "dup-a", "label": "x", "text": "Exact DUPLICATE  text"}).encode()
    lines[1100] = json.dumps({"id": "dup-b", "label": "y", "text": "exact duplicate text"}).encode()
    lines[900] = json.dumps({"id": "d5", "label": "x", "text": "an id used long before"}).encode()
    lines[300] = b'{"id": "bad", "text": "unterminated}'
    lines[301] = json.dumps({"id": "blank", "text": " \u3000\t"}).encode()
    lines[1000] = json.dumps({"label": "y", "text": "no id: its position"}).encode()
    return lines


def ingest_both_ways(inputs: list[str], tmp_path: Path, **kw) -> list:
    results = []
    for pipeline in (False, True):
        out = tmp_path / f"pipeline-{pipeline}"
        res = ingest_inputs(inputs, out / "store", out / "parts", ReadOptions(pipeline=pipeline), **kw)
        results.append((store_digest(out / "store"), [r.to_json() for r in res.rejects], [c.to_json() for c in res.counts],
                        res.records_read, out / "store"))
    return results


@pytest.mark.parametrize("kw", [{}, {"piece_bytes": 20_000}])
def test_pipelined_jsonl_store_is_the_serial_one(tmp_path, monkeypatch, kw):
    lines = planted_lines()
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    # blocks of about 16 KB: many blocks, each planted record in another block than its first copy
    monkeypatch.setattr(corpus, "plain_blocks", functools.partial(corpus.plain_blocks, chunk=16_384))
    blocks = []
    real = corpus.CorpusReader.read_piece

    def counting(self, piece):
        for item in real(self, piece):
            blocks.append(isinstance(item, RecordBlock))
            yield item

    monkeypatch.setattr(corpus.CorpusReader, "read_piece", counting)
    serial, pipelined = ingest_both_ways([str(path)], tmp_path, **kw)
    assert serial[:4] == pipelined[:4]
    assert sum(blocks) >= 2 * 10  # fast blocks on both ways, besides the blocks read line by line
    store = DocStore(pipelined[4])
    reasons = [r["reason"] for r in pipelined[1]]
    assert len(store) + len(reasons) == len(lines) == pipelined[3]
    assert any("malformed JSON" in r for r in reasons) and "empty text" in reasons and any("duplicate id 'd5'" in r for r in reasons)
    h = np.load(store.dir / "text_hash.npy")
    ids = [store.record(i)["id"] for i in range(len(store))]
    assert h[ids.index("dup-a")] == h[ids.index("dup-b")] and len(set(h.tolist())) == len(h) - 1


def test_pipelined_parquet_store_is_the_serial_one(tmp_path):
    rows = [json.loads(x) for x in planted_lines() if x.startswith(b'{"id": "d')]
    for k, r in enumerate(rows):
        r.setdefault("label", None)
        if k == 400:
            r["text"] = "  "  # a blank text: its batch is read row by row
        if k == 800:
            r["text"] = "EXACT  duplicate of row 100: " + rows[100]["text"]
            rows[100]["text"] = "exact duplicate of row 100: " + rows[100]["text"]
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=97)
    serial, pipelined = ingest_both_ways([str(path)], tmp_path)
    assert serial[:4] == pipelined[:4]
    assert [r["reason"] for r in pipelined[1]] == ["empty text", "duplicate id 'd5' (first seen at " + str(path) + ":6)"]


def test_writeback_syncs_while_writing_and_loses_nothing(tmp_path, monkeypatch):
    synced = []
    real = atomic.os.fdatasync

    def recording(fd):
        synced.append(fd)
        return real(fd)

    monkeypatch.setattr(atomic.os, "fdatasync", recording)
    with open(tmp_path / "a", "wb") as a, open(tmp_path / "b", "wb") as b:
        wb = atomic.Writeback([a, b], every=1000)
        for i in range(200):
            a.write(b"a" * 100)
            b.write(bytes([i % 256]) * 50)
            wb.wrote(150)
        wb.finish()
        assert synced and set(synced) <= {a.fileno(), b.fileno()}
    assert (tmp_path / "a").read_bytes() == b"a" * 20_000
    assert (tmp_path / "b").read_bytes() == b"".join(bytes([i % 256]) * 50 for i in range(200))


def test_commit_many_renames_only_files_on_disk(tmp_path):
    pairs = [(atomic.write_unsynced(tmp_path / f"f{k}", lambda fh, k=k: fh.write(bytes([k]) * 10)), tmp_path / f"f{k}")
             for k in range(4)]
    assert all(tmp.exists() and not path.exists() for tmp, path in pairs)
    atomic.commit_many(pairs)
    assert [(tmp_path / f"f{k}").read_bytes() for k in range(4)] == [bytes([k]) * 10 for k in range(4)]
    assert not list(tmp_path.glob("*.tmp"))


def test_commit_many_on_a_full_disk_renames_nothing(tmp_path, monkeypatch):
    (tmp_path / "f1").write_bytes(b"old")
    pairs = [(atomic.write_unsynced(tmp_path / f"f{k}", lambda fh: fh.write(b"new")), tmp_path / f"f{k}") for k in range(3)]
    real = atomic.os.fsync
    calls = []

    def full(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(ResourceError, match="no space left"):
        atomic.commit_many(pairs)
    assert (tmp_path / "f1").read_bytes() == b"old" and not (tmp_path / "f0").exists() and not (tmp_path / "f2").exists()
    assert not list(tmp_path.glob("*.tmp"))
