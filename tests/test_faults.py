"""Reliability: bad input, edge sizes, accounting, crash safety, determinism, disk.

Every test here can fail: it checks where each bad record went, that counts add up,
that a killed run resumes to byte-identical outputs, and that nothing leaks outside
the run directory.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contextsort
from contextsort.config import Config
from contextsort.errors import RunError
from contextsort.stages.ingest import IngestStage

SRC = str(Path(__file__).resolve().parents[1] / "src")
OUTPUTS = ("ordered.jsonl", "ordered.parquet", "removed.jsonl")

pytestmark = pytest.mark.faults


def cli(*args, env_extra=None, timeout=120):
    env = {**os.environ, "PYTHONPATH": SRC, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "contextsort.cli", *args], capture_output=True, text=True, env=env, timeout=timeout)


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def articles():
    """150 distinct real BBC articles (id, text, label)."""
    from contextsort.sample import bbc_news_path

    root = bbc_news_path()
    rows, seen = [], set()
    for p in sorted(root.rglob("*.txt")):
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if text not in seen and len(rows) < 150 and int(p.stem) % 3 == 0:
            seen.add(text)
            rows.append({"id": p.relative_to(root).as_posix(), "text": text, "label": p.parent.name})
    return rows


def jsonl_lines(rows):
    return [json.dumps(r) for r in rows]


# ---------------------------------------------------------------------------
# Bad input: rejected with file, line and reason by default; --strict stops with exit 2
# ---------------------------------------------------------------------------

BAD_LINES = {
    "malformed JSON": '{"id": "m", "text": "unterminated',
    "missing text field 'text'": json.dumps({"id": "no-text", "body": "x"}),
    "is int, not a string": json.dumps({"id": "int-text", "text": 42}),
    "empty text": json.dumps({"id": "blank", "text": "   \n\t "}),
    "not an object": json.dumps(["a", "list"]),
}


@pytest.mark.parametrize("reason,line", list(BAD_LINES.items()))
def test_bad_jsonl_record_is_rejected_then_strict_stops(tmp_path, articles, reason, line):
    lines = jsonl_lines(articles[:6])
    lines.insert(2, line)
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    res = contextsort.run([path], tmp_path / "run")
    rejected = [r for r in read_jsonl(tmp_path / "run" / "removed.jsonl") if r["reason"].startswith("rejected")]
    assert len(rejected) == 1
    assert reason in rejected[0]["reason"] and rejected[0]["line"] == 3 and rejected[0]["source"] == str(path)
    assert res.counts["adds_up"] and res.counts["records_read"] == 7

    p = cli("run", str(path), "-o", str(tmp_path / "strict"), "--strict", "-q")
    assert p.returncode == 2, p.stderr
    err = p.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"{path}:3" in err and reason in err


def test_invalid_utf8_line_is_rejected(tmp_path, articles):
    path = tmp_path / "in.jsonl"
    good = "\n".join(jsonl_lines(articles[:4])).encode()
    path.write_bytes(good + b'\n{"id": "latin", "text": "caf\xe9"}\n')
    contextsort.run([path], tmp_path / "run")
    rej = [r for r in read_jsonl(tmp_path / "run" / "removed.jsonl") if r["reason"].startswith("rejected")]
    assert len(rej) == 1 and "invalid UTF-8" in rej[0]["reason"] and rej[0]["line"] == 5


def test_duplicate_ids_are_rejected_naming_the_first(tmp_path, articles):
    rows = articles[:5] + [{"id": articles[1]["id"], "text": articles[7]["text"]}]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(jsonl_lines(rows)) + "\n")
    res = contextsort.run([path], tmp_path / "run")
    rej = [r for r in read_jsonl(tmp_path / "run" / "removed.jsonl") if r["reason"].startswith("rejected")]
    assert len(rej) == 1 and "duplicate id" in rej[0]["reason"] and f"{path}:2" in rej[0]["reason"]
    assert res.counts["kept"] == 5
    # the later copy is gone from the store: every kept record still has its own text
    out = read_jsonl(tmp_path / "run" / "ordered.jsonl")
    assert {r["id"]: r["text"] for r in out} == {r["id"]: r["text"] for r in articles[:5]}
    p = cli("run", str(path), "-o", str(tmp_path / "strict"), "--strict", "-q")
    assert p.returncode == 2 and f"{path}:6" in p.stderr and "field 'id'" in p.stderr


def test_duplicate_id_store_compaction_keeps_records_aligned(tmp_path, articles):
    """Several repeated ids spread through the input: the store is rewritten without them."""
    from contextsort.corpus import CorpusReader, DocStore, DocStoreWriter, Reject

    rows = [dict(r) for r in articles[:40]]
    for k, j in enumerate((3, 11, 12, 30)):  # ids reused later with other texts
        rows.insert(j + 5 + k, {"id": rows[j]["id"], "text": articles[60 + k]["text"]})
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(jsonl_lines(rows)) + "\n")
    w = DocStoreWriter(tmp_path / "store")
    for item in CorpusReader([path]):
        assert not isinstance(item, Reject)
        w.add(item)
    rejects = w.close()
    assert len(rejects) == 4 and w.n == 40
    store = DocStore(tmp_path / "store")
    assert len(store) == 40
    for i, r in enumerate(articles[:40]):
        assert store.record(i)["id"] == r["id"] and store.text(i) == r["text"]
        assert store.label(i) == r["label"]
    with pytest.raises(Exception, match="duplicate id"):
        w2 = DocStoreWriter(tmp_path / "store2")
        for item in CorpusReader([path]):
            w2.add(item)
        w2.close(strict=True)


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_truncated_compressed_file_keeps_what_was_readable(tmp_path, articles, kind):
    import zstandard

    # four independently compressed members/frames; the last one is cut in half
    comp = gzip.compress if kind == "gz" else zstandard.ZstdCompressor().compress
    members = [comp(("\n".join(jsonl_lines(articles[i : i + 10])) + "\n").encode()) for i in range(0, 40, 10)]
    path = tmp_path / f"in.jsonl.{kind}"
    path.write_bytes(b"".join(members[:3]) + members[3][: len(members[3]) // 2])
    res = contextsort.run([path], tmp_path / "run")
    rej = [r for r in read_jsonl(tmp_path / "run" / "removed.jsonl") if r["reason"].startswith("rejected")]
    assert len(rej) == 1 and "unreadable file" in rej[0]["reason"]
    assert 30 <= res.counts["kept"] + res.counts["duplicates"] < 40 and res.counts["adds_up"]
    p = cli("run", str(path), "-o", str(tmp_path / "strict"), "--strict", "-q")
    assert p.returncode == 2 and str(path) in p.stderr and "Traceback" not in p.stderr


def test_missing_path_is_rejected_and_the_rest_runs(tmp_path, articles):
    good = tmp_path / "in.jsonl"
    good.write_text("\n".join(jsonl_lines(articles[:5])) + "\n")
    broken = tmp_path / "gone.jsonl"
    os.symlink(tmp_path / "nowhere", broken)  # a dangling link: listed, but unreadable
    res = contextsort.run([good, broken], tmp_path / "run")
    rej = [r for r in read_jsonl(tmp_path / "run" / "removed.jsonl") if r["reason"].startswith("rejected")]
    assert [r["source"] for r in rej] == [str(broken)] and "broken symbolic link" in rej[0]["reason"]
    assert res.counts["kept"] == 5
    p = cli("run", str(good), str(broken), "-o", str(tmp_path / "strict"), "--strict", "-q")
    assert p.returncode == 2 and str(broken) in p.stderr


def test_parquet_without_text_column(tmp_path, articles):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "body": r["text"]} for r in articles[:4]]), path)
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(jsonl_lines(articles[4:8])) + "\n")
    res = contextsort.run([path, good], tmp_path / "run")
    rej = [r for r in read_jsonl(tmp_path / "run" / "removed.jsonl") if r["reason"].startswith("rejected")]
    assert len(rej) == 4 and all("no column 'text'" in r["reason"] for r in rej)
    assert sorted(r["line"] for r in rej) == [1, 2, 3, 4]
    assert res.counts["adds_up"] and res.counts["records_read"] == 8
    p = cli("run", str(path), "-o", str(tmp_path / "strict"), "--strict", "-q")
    assert p.returncode == 2 and f"{path}:1" in p.stderr and "field 'text'" in p.stderr


# ---------------------------------------------------------------------------
# Edge sizes
# ---------------------------------------------------------------------------


def test_zero_documents_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(contextsort.InputError, match="no usable documents"):
        contextsort.run([path], tmp_path / "run")
    p = cli("run", str(path), "-o", str(tmp_path / "run2"), "-q")
    assert p.returncode == 2 and "no usable documents" in p.stderr


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_corpora_and_k_at_least_n(tmp_path, articles, n):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(jsonl_lines(articles[:n])) + "\n")
    res = contextsort.run([path], tmp_path / "run")
    out = read_jsonl(tmp_path / "run" / "ordered.jsonl")
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in articles[:n])
    assert res.counts["adds_up"]


def test_all_documents_identical(tmp_path, articles):
    rows = [{"id": i, "text": articles[0]["text"]} for i in range(30)]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(jsonl_lines(rows)) + "\n")
    res = contextsort.run([path], tmp_path / "run")
    out = read_jsonl(tmp_path / "run" / "ordered.jsonl")
    removed = read_jsonl(tmp_path / "run" / "removed.jsonl")
    assert [r["id"] for r in out] == [0]
    assert sorted(r["id"] for r in removed) == list(range(1, 30))
    assert all(r["duplicate_of"] == 0 for r in removed)
    assert res.counts["duplicates"] == 29


def test_fifty_megabyte_document(tmp_path, articles):
    big = (articles[0]["text"] + "\n") * (50_000_000 // len(articles[0]["text"]) + 1)
    rows = [{"id": "big", "text": big[:50_000_000]}] + articles[1:5]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(jsonl_lines(rows)) + "\n")
    res = contextsort.run([path], tmp_path / "run")
    out = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "ordered.jsonl")}
    assert len(out["big"]["text"]) == 50_000_000
    assert res.counts["kept"] == 5


def test_nan_and_zero_embeddings_are_rejected_with_reason(tmp_path, articles, monkeypatch):
    import contextsort.embed as embed_mod

    real = embed_mod.get_embedder("wordllama")

    class Broken:
        name, dim = "broken", real.dim

        def encode(self, texts):
            v = real.encode(texts)
            for i, t in enumerate(texts):
                if t.startswith("ZERO"):
                    v[i] = 0
                elif t.startswith("NAN"):
                    v[i] = np.nan
            return v

    monkeypatch.setattr(embed_mod, "get_embedder", lambda spec, **kw: Broken())
    rows = articles[:6] + [{"id": "z", "text": "ZERO " + articles[10]["text"]}, {"id": "n", "text": "NAN " + articles[11]["text"]}]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(jsonl_lines(rows)) + "\n")
    res = contextsort.run([path], tmp_path / "run")
    removed = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "removed.jsonl")}
    assert set(removed) == {"z", "n"} and all("embedding" in r["reason"] for r in removed.values())
    assert res.counts["rejected"] == 2 and res.counts["kept"] == 6 and res.counts["adds_up"]


# ---------------------------------------------------------------------------
# Accounting
# ---------------------------------------------------------------------------


def test_accounting_mismatch_is_an_error(tmp_path, articles, monkeypatch):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(jsonl_lines(articles[:5])) + "\n")
    real = IngestStage.run

    def lossy(self, ctx):
        out = real(self, ctx)
        out["records_read"] += 1  # pretend one record vanished
        return out

    monkeypatch.setattr(IngestStage, "run", lossy)
    with pytest.raises(RunError, match="do not add up"):
        contextsort.run([path], tmp_path / "run")
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["counts"]["adds_up"] is False


# ---------------------------------------------------------------------------
# Crash safety, resume, invalidation, determinism
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crash_corpus(tmp_path_factory, articles):
    d = tmp_path_factory.mktemp("crash")
    path = d / "in.jsonl"
    rows = articles + [dict(articles[3], id="copy-of-3")]  # one exact duplicate
    path.write_text("\n".join(jsonl_lines(rows)) + "\n{broken\n")
    ref = d / "ref"
    p = cli("run", str(path), "-o", str(ref), "-q")
    assert p.returncode == 0, p.stderr
    return path, ref


def outputs(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in OUTPUTS}


CRASH_POINTS = [
    "ingest:mid",
    "ingest:before-commit",
    "embed:before-commit",
    "neighbors:before-commit",
    "dedup:before-commit",
    "order:before-commit",
    "write:mid",
    "write:before-commit",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_at_any_stage_then_resume_gives_identical_outputs(tmp_path, crash_corpus, point):
    path, ref = crash_corpus
    run = tmp_path / "run"
    p = cli("run", str(path), "-o", str(run), "-q", env_extra={"CONTEXTSORT_CRASH_AT": point})
    assert p.returncode == -signal.SIGKILL, (point, p.returncode, p.stderr)
    assert not (run / "ordered.jsonl").exists() or point.startswith("write:")
    p = cli("run", str(path), "-o", str(run), "-q")
    assert p.returncode == 0, p.stderr
    assert outputs(run) == outputs(ref)
    leftovers = [f.name for f in run.rglob("*.tmp")]
    assert leftovers == []


@pytest.mark.parametrize("delay", [0.8, 1.6, 2.4])
def test_kill_9_at_a_random_moment_then_resume(tmp_path, crash_corpus, delay):
    path, ref = crash_corpus
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-m", "contextsort.cli", "run", str(path), "-o", str(run), "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    p = cli("run", str(path), "-o", str(run), "-q")
    assert p.returncode == 0, p.stderr
    assert outputs(run) == outputs(ref)


def test_changed_input_invalidates_only_what_it_affects(tmp_path, articles):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(jsonl_lines(articles[:30])) + "\n")
    contextsort.run([path], tmp_path / "run")
    # same content, new mtime: inputs are fingerprinted by content, so nothing reruns
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    res = contextsort.run([path], tmp_path / "run")
    assert res.skipped == ["ingest", "tokenize", "embed", "neighbors", "dedup", "order", "metrics", "write", "report"]
    # changed content: everything after ingest is recomputed
    path.write_text("\n".join(jsonl_lines(articles[:31])) + "\n")
    res = contextsort.run([path], tmp_path / "run")
    assert res.skipped == [] and res.counts["records_read"] == 31
    # changed dedup threshold: ingest/embed/neighbors are reused
    cfg = Config()
    cfg.dedup.threshold = 0.9
    res = contextsort.run([path], tmp_path / "run", cfg)
    assert res.skipped == ["ingest", "tokenize", "embed", "neighbors"]


@pytest.mark.parametrize("index", ["flat", "ivf", "ivfgemm", "hnsw"])
def test_same_input_config_seed_gives_identical_bytes(tmp_path, articles, index):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(jsonl_lines(articles)) + "\n")
    cfg = Config()
    cfg.knn.index = index
    contextsort.run([path], tmp_path / "a", cfg)
    contextsort.run([path], tmp_path / "b", cfg)
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")


def test_nothing_is_written_outside_the_run_directory(tmp_path, articles):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(jsonl_lines(articles[:10])) + "\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    p = cli("run", str(path), "-o", str(tmp_path / "run"), "-q")
    assert p.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["run"])


# ---------------------------------------------------------------------------
# Property: random corpora with random bad records always add up
# ---------------------------------------------------------------------------

BAD_KINDS = ["malformed", "no_text", "int_text", "blank", "dup_id", "bad_utf8"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n_good=st.integers(1, 25),
    bad=st.lists(st.sampled_from(BAD_KINDS), max_size=8),
    copies=st.integers(0, 3),
    seed=st.integers(0, 1000),
)
def test_property_accounting_and_permutation(tmp_path_factory, articles, n_good, bad, copies, seed):
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(articles), n_good, replace=False)
    lines = [json.dumps(articles[i]).encode() for i in pick]
    lines += [json.dumps({"id": f"copy{c}", "text": articles[pick[0]]["text"]}).encode() for c in range(copies)]
    for j, kind in enumerate(bad):
        lines.append(
            {
                "malformed": b'{"id": "x", "text": ',
                "no_text": json.dumps({"id": f"nt{j}"}).encode(),
                "int_text": json.dumps({"id": f"it{j}", "text": 3}).encode(),
                "blank": json.dumps({"id": f"bl{j}", "text": " "}).encode(),
                "dup_id": json.dumps({"id": articles[pick[0]]["id"], "text": "other text entirely"}).encode(),
                "bad_utf8": b'{"id": "u", "text": "\xff\xfe"}',
            }[kind]
        )
    order = rng.permutation(len(lines))
    d = tmp_path_factory.mktemp("prop")
    path = d / "in.jsonl"
    path.write_bytes(b"\n".join(lines[i] for i in order) + b"\n")
    res = contextsort.run([path], d / "run")
    c = res.counts
    assert c["records_read"] == len(lines)
    assert c["kept"] + c["duplicates"] + c["rejected"] == len(lines)
    out = read_jsonl(d / "run" / "ordered.jsonl")
    removed = read_jsonl(d / "run" / "removed.jsonl")
    assert len(out) == c["kept"] and len(removed) == c["duplicates"] + c["rejected"]
    kept_positions = sorted(res.order.tolist())
    assert len(set(kept_positions)) == len(kept_positions)
    assert [r["position"] for r in out] == list(range(len(out)))
    assert c["rejected"] == len(bad)
    if "dup_id" not in bad:  # a colliding id may reject the original and keep its copy
        assert c["duplicates"] >= copies
