"""End-to-end runs on the BBC News sample and on small JSONL / Parquet corpora."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import contextsort
from contextsort.config import Config

from conftest import write_jsonl

SRC = str(Path(__file__).resolve().parents[1] / "src")


def cli(*args, check=False):
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-m", "contextsort.cli", *args], capture_output=True, text=True, env=env, check=check)


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


# ---------------------------------------------------------------------------
# BBC sample
# ---------------------------------------------------------------------------


def test_bbc_output_is_permutation_of_kept_documents(bbc_run, bbc_path):
    out = read_jsonl(bbc_run.run_dir / "ordered.jsonl")
    removed = read_jsonl(bbc_run.run_dir / "removed.jsonl")
    all_files = sorted(p.relative_to(bbc_path).as_posix() for p in bbc_path.rglob("*.txt"))
    out_ids = [r["id"] for r in out]
    assert len(out_ids) == len(set(out_ids))  # each document once
    assert sorted(out_ids + [r["id"] for r in removed]) == all_files  # nothing lost
    assert [r["position"] for r in out] == list(range(len(out)))
    assert all(r["label"] == r["id"].split("/")[0] for r in out)
    c = bbc_run.counts
    assert c["adds_up"] and c["kept"] + c["duplicates"] + c["rejected"] == c["records_read"] == len(all_files)


def test_bbc_exact_duplicates_are_found(bbc_run, bbc_path):
    """Every later copy of an identical article is removed and names a kept copy."""
    seen: dict[str, str] = {}
    expected_dups = set()
    for p in sorted(bbc_path.rglob("*.txt")):
        data = p.read_bytes()
        h = hashlib.sha256(data).hexdigest()
        rid = p.relative_to(bbc_path).as_posix()
        if h in seen:
            expected_dups.add(rid)
        else:
            seen[h] = rid
    assert len(expected_dups) >= 90  # the sample ships about 98 exact duplicates
    removed = {r["id"]: r for r in read_jsonl(bbc_run.run_dir / "removed.jsonl")}
    kept = {r["id"] for r in read_jsonl(bbc_run.run_dir / "ordered.jsonl")}
    for rid in expected_dups:
        assert rid in removed and removed[rid]["reason"] == "duplicate", rid
        assert removed[rid]["duplicate_of"] in kept


def test_bbc_order_beats_random(bbc_run):
    m = bbc_run.metrics
    assert m["adjacent_similarity"]["ordered"] > 2 * m["adjacent_similarity"]["random"]
    assert m["label_agreement"]["ordered"] > 2 * m["label_agreement"]["random"]
    assert 0 < m["path_weight"]["ratio"] <= 1.0


def test_parquet_output_matches_jsonl(bbc_run):
    table = pq.read_table(bbc_run.run_dir / "ordered.parquet")
    rows = read_jsonl(bbc_run.run_dir / "ordered.jsonl")
    assert table.num_rows == len(rows)
    assert table.column("id").to_pylist() == [r["id"] for r in rows]
    assert table.column("text").to_pylist()[:50] == [r["text"] for r in rows[:50]]


def test_manifest_records_config_versions_timings(bbc_run):
    m = json.loads((bbc_run.run_dir / "manifest.json").read_text())
    assert m["config"]["knn"]["k"] == 10
    assert {"faiss", "numpy", "contextsort"} <= set(m["versions"])
    assert set(m["stages"]) == {"ingest", "tokenize", "embed", "neighbors", "dedup", "order", "metrics", "write", "report"}
    assert all(s["seconds"] >= 0 and s["cpu_seconds"] >= 0 for s in m["stages"].values())
    assert sum(s["cpu_seconds"] for s in m["stages"].values()) > 0.5  # this process's CPU time over the stage, threads included
    assert m["stages"]["neighbors"]["index"] == "flat"
    assert m["input_fingerprint"]


# ---------------------------------------------------------------------------
# Small corpora: formats, resume, bad input
# ---------------------------------------------------------------------------

def small_corpus(n_per=12):
    """Real BBC articles (n_per per topic, distinct texts), shuffled, as JSONL rows."""
    from contextsort.sample import bbc_news_path

    root = bbc_news_path()
    rows, seen = [], set()
    for topic in ("business", "sports", "tech"):
        for p in sorted((root / topic).glob("*.txt")):
            try:
                text = p.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            if text in seen:
                continue
            seen.add(text)
            rows.append({"id": f"{topic}-{p.stem}", "text": text, "label": topic, "extra": {"n": len(rows)}})
            if sum(r["label"] == topic for r in rows) == n_per:
                break
    order = np.random.default_rng(0).permutation(len(rows))
    return [rows[i] for i in order]


def test_jsonl_gz_zst_and_parquet_inputs(tmp_path):
    import pyarrow as pa
    import zstandard

    rows = small_corpus()
    a, b, c = rows[:12], rows[12:24], rows[24:]
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in a)
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in b).encode()))
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "extra"} for r in c]), tmp_path / "c.parquet")
    res = contextsort.run([tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.zst", tmp_path / "c.parquet"], tmp_path / "run")
    out = read_jsonl(tmp_path / "run" / "ordered.jsonl")
    removed = read_jsonl(tmp_path / "run" / "removed.jsonl")
    assert sorted(r["id"] for r in out + removed) == sorted(r["id"] for r in rows)
    assert len(out) >= len(rows) - 2 and res.counts["adds_up"]
    # original fields are kept
    by_id = {r["id"]: r for r in out}
    assert by_id[a[0]["id"]]["extra"] == a[0]["extra"]
    assert res.metrics["label_agreement"]["ordered"] > res.metrics["label_agreement"]["random"]


def test_missing_ids_get_their_position(tmp_path):
    rows = [{"text": r["text"]} for r in small_corpus(4)]
    write_jsonl(tmp_path / "x.jsonl", rows)
    contextsort.run([tmp_path / "x.jsonl"], tmp_path / "run", Config())
    out = read_jsonl(tmp_path / "run" / "ordered.jsonl")
    removed = read_jsonl(tmp_path / "run" / "removed.jsonl")
    # records carry no id field: each gets its position among the records read
    assert sorted(r["id"] for r in out + removed) == list(range(len(rows)))
    texts = {r["id"]: r["text"] for r in out}
    assert all(texts[i] == rows[i]["text"] for i in texts)


def test_resume_skips_finished_stages_and_recomputes_changed_ones(tmp_path):
    write_jsonl(tmp_path / "x.jsonl", small_corpus())
    first = contextsort.run([tmp_path / "x.jsonl"], tmp_path / "run")
    assert first.skipped == []
    before = (tmp_path / "run" / "ordered.jsonl").read_bytes()
    again = contextsort.run([tmp_path / "x.jsonl"], tmp_path / "run")
    assert again.skipped == ["ingest", "tokenize", "embed", "neighbors", "dedup", "order", "metrics", "write", "report"]
    assert (tmp_path / "run" / "ordered.jsonl").read_bytes() == before
    cfg = Config()
    cfg.order.algorithm = "random"
    changed = contextsort.run([tmp_path / "x.jsonl"], tmp_path / "run", cfg)
    assert changed.skipped == ["ingest", "tokenize", "embed", "neighbors", "dedup"]
    assert (tmp_path / "run" / "ordered.jsonl").read_bytes() != before


def test_malformed_line_goes_to_rejects_with_file_and_line(tmp_path):
    rows = small_corpus(4)
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, '{"id": "broken", "text": "unterminated')
    lines.insert(6, json.dumps({"id": "no-text"}))
    path.write_text("\n".join(lines) + "\n")
    res = contextsort.run([path], tmp_path / "run")
    removed = read_jsonl(tmp_path / "run" / "removed.jsonl")
    rejected = [r for r in removed if r["reason"].startswith("rejected")]
    assert {(r["line"], r["source"]) for r in rejected} == {(4, str(path)), (7, str(path))}
    assert any("malformed JSON" in r["reason"] for r in rejected)
    assert any("missing text field 'text'" in r["reason"] for r in rejected)
    assert res.counts["records_read"] == len(lines) and res.counts["adds_up"]


def test_strict_mode_stops_with_file_and_line_and_no_traceback(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": 1, "text": "fine text"}) + "\n" + "{nope\n")
    p = cli("run", str(path), "-o", str(tmp_path / "run"), "--strict", "-q")
    assert p.returncode == 2
    assert f"{path}:2" in p.stderr and "malformed JSON" in p.stderr
    assert "Traceback" not in p.stderr


def test_cli_run_prints_summary(tmp_path):
    write_jsonl(tmp_path / "x.jsonl", small_corpus())
    p = cli("run", str(tmp_path / "x.jsonl"), "-o", str(tmp_path / "run"), "-q")
    assert p.returncode == 0, p.stderr
    assert "adjacent_similarity" in p.stdout and "adds up" in p.stdout


def test_refuses_foreign_non_empty_directory(tmp_path):
    write_jsonl(tmp_path / "x.jsonl", small_corpus(2))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "precious.txt").write_text("keep me")
    p = cli("run", str(tmp_path / "x.jsonl"), "-o", str(tmp_path / "run"), "-q")
    assert p.returncode == 2 and "--overwrite" in p.stderr
    assert (tmp_path / "run" / "precious.txt").exists()


def test_missing_input_is_a_clear_error(tmp_path):
    p = cli("run", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "run"), "-q")
    assert p.returncode == 2 and "nope.jsonl" in p.stderr and "Traceback" not in p.stderr


def test_parquet_keeps_fields_only_some_records_have(tmp_path):
    """A field missing from a batch's first record must still reach the Parquet file."""
    rows = small_corpus(6)
    for i, r in enumerate(rows):
        if i % 4 == 2:
            r["note"] = f"n{i}"
    rows[0].pop("note", None)
    write_jsonl(tmp_path / "x.jsonl", rows)
    contextsort.run([tmp_path / "x.jsonl"], tmp_path / "run")
    table = pq.read_table(tmp_path / "run" / "ordered.parquet")
    assert "note" in table.column_names
    by_id = dict(zip(table.column("id").to_pylist(), table.column("note").to_pylist()))
    kept = {r["id"] for r in read_jsonl(tmp_path / "run" / "ordered.jsonl")}
    assert by_id == {r["id"]: r.get("note") for r in rows if r["id"] in kept}
