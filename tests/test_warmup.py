"""warmup: the tiny corpus is valid input with work for every stage; the late warm-up caches the
late stages for another process; the marker and the lock stop a second warm-up."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

import pytest

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


@pytest.fixture
def cold(tmp_path, monkeypatch):
    """A marker path of our own and the warm-up switched on (conftest switches it off)."""
    marker = tmp_path / "marker"
    monkeypatch.setattr(warmup, "marker_path", lambda: marker)
    monkeypatch.setenv("CONTEXTSORT_WARMUP", "1")
    started = []
    monkeypatch.setattr(warmup.subprocess, "Popen", lambda cmd, **kw: started.append((cmd, kw)) or "proc")
    return marker, started


def test_start_background_starts_one_process_until_marked(cold, monkeypatch):
    marker, started = cold
    assert warmup.start_background() == "proc"
    cmd, kw = started[0]
    assert cmd[1:4] == ["-m", "contextsort.warmup", "--late"]
    assert kw["env"]["CONTEXTSORT_WARMUP"] == "0"  # the warm-up's own run starts no warm-up
    marker.touch()
    assert warmup.start_background() is None and len(started) == 1
    marker.unlink()
    monkeypatch.setenv("CONTEXTSORT_WARMUP", "0")
    assert warmup.start_background() is None and len(started) == 1


def test_start_background_skips_while_another_warmup_holds_the_lock(cold):
    marker, started = cold
    fd = os.open(marker.with_suffix(".lock"), os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert warmup.start_background() is None and started == []
    finally:
        os.close(fd)
    assert warmup.start_background() == "proc"


def test_source_stamp_changes_with_a_source_file(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(warmup, "PACKAGE_DIR", tmp_path)
    before = warmup.source_stamp()
    (tmp_path / "a.py").write_text("x = 22\n")
    assert warmup.source_stamp() != before


COMPILES = """
import json, sys
import numpy as np
from numba.core import event
compiled = []
class Rec(event.Listener):
    def on_start(self, ev): pass
    def on_end(self, ev): compiled.append(ev.data["dispatcher"].py_func.__qualname__)
event.register("numba:compile", Rec())
from contextsort.graph import graph_from_knn
rng = np.random.default_rng(0)
ids = rng.integers(0, 50, (50, 5)).astype(np.int64)
graph_from_knn(ids, rng.random((50, 5)).astype(np.float32))
print(json.dumps(compiled))
"""


RUN_COMPILES = """
import json, sys, tempfile
from pathlib import Path
from numba.core import event
compiled = []
class Rec(event.Listener):
    def on_start(self, ev): pass
    def on_end(self, ev):
        f = ev.data["dispatcher"].py_func
        if f.__module__.startswith("contextsort"):  # ours, not numba's own helpers
            compiled.append(f.__qualname__)
event.register("numba:compile", Rec())
from contextsort import warmup
from contextsort.api import run
with tempfile.TemporaryDirectory() as tmp:
    warmup.warmup_corpus(Path(tmp) / "w.jsonl")
    run([Path(tmp) / "w.jsonl"], Path(tmp) / "run", quiet=True)  # a default run
print(json.dumps(compiled))
"""

# what a run still compiles itself beside a warm-up with 4+ cores: its embedder's pooling and the term counting
RUN_OWN = {"mean_pool_rows", "_piece_hashes", "_mix", "_word_features", "_distinct", "_word_nnz_rows", "_put_counts",
           "_word_fill_rows"}


def test_late_warmup_caches_the_graph_for_the_next_process(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}  # a cold cache of our own
    probe = [sys.executable, "-c", COMPILES]
    assert "_symmetrize" in json.loads(subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba2")
    # the part a split warm-up runs in its first process (graph, order, metrics) caches the graph
    subprocess.run([sys.executable, "-m", "contextsort.warmup", "--part", "order"], env=env, check=True, capture_output=True)
    assert json.loads(subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout) == []
    # what the warm-up beside a first run compiles with 4+ cores: --late and its second process
    subprocess.run([sys.executable, "-m", "contextsort.warmup", "--late"], env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "contextsort.warmup", "--part", "signal"], env=env, check=True, capture_output=True)
    # a whole default run after them: the signal's kNN, scales and rescoring, the graph, dedup,
    # order and metrics are all cached; only the run's own early kernels compile (and do: the
    # probe sees compilations)
    compiled = set(json.loads(subprocess.run([sys.executable, "-c", RUN_COMPILES], env=env, capture_output=True,
                                             text=True, check=True).stdout))
    assert "_word_nnz_rows" in compiled
    assert compiled <= RUN_OWN, compiled - RUN_OWN
