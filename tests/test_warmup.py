"""warmup: the tiny corpus is valid input with work for every stage; the marker stops a second warm-up."""

from __future__ import annotations

import json

from contextsort import warmup


def test_warmup_corpus_has_labels_and_an_exact_duplicate(tmp_path):
    path = tmp_path / "w.jsonl"
    warmup.warmup_corpus(path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == warmup.WARMUP_DOCS + 2
    assert len({r["id"] for r in records}) == len(records)
    assert all(r["text"] and r["label"] for r in records)
    texts = [r["text"] for r in records]
    assert len(set(texts)) < len(texts)  # the planted duplicate


def test_start_background_skips_when_marker_exists(tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setattr(warmup, "marker_path", lambda: marker)
    calls = []
    monkeypatch.setattr(warmup, "compile_hot_loops", lambda: calls.append(1) or 0.0)
    thread = warmup.start_background()
    assert thread is not None
    thread.join()
    assert calls == [1]
    marker.touch()
    assert warmup.start_background() is None and calls == [1]


def test_source_stamp_changes_with_a_source_file(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(warmup, "PACKAGE_DIR", tmp_path)
    before = warmup.source_stamp()
    (tmp_path / "a.py").write_text("x = 22\n")
    assert warmup.source_stamp() != before
