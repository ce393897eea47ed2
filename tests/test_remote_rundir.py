"""A run directory at an s3:// URL, on a real S3-compatible server (moto in server mode on
127.0.0.1, test_remote's fixture): outputs read back from S3 by their own readers, resume
from a fresh working copy, a crash keeps the finished stages, a foreign prefix is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_remote import local_corpus, s3  # noqa: F401

STAGES = {"ingest", "tokenize", "embed", "neighbors", "dedup", "order", "write", "pack", "metrics", "report"}


def s3_lines(fs, path: str) -> list[dict]:
    with fs.open(path, "rb") as fh:
        return [json.loads(line) for line in fh.read().decode("utf-8").splitlines()]


def test_run_to_s3_reads_back_and_resumes_from_a_fresh_cache(s3, local_corpus, tmp_path, monkeypatch):  # noqa: F811
    import pyarrow.parquet as pq

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the default working copy (pack_run below)

    import contextsort
    from contextsort.cli import main

    d, n_records = local_corpus
    url = "s3://corpus-bucket/runs/x"
    assert main([ "run", str(d), "-o", url, "--cache-dir", str(tmp_path / "cache1"), "--similarity", "dense",
                 "-L", "512", "--pack-format", "megatron,parquet", "-q"]) == 0
    s3.invalidate_cache()
    man = json.loads(s3.cat_file("corpus-bucket/runs/x/manifest.json"))
    assert set(man["stages"]) >= STAGES - {"report"} and man["skipped"] == []
    c = man["counts"]
    assert c["records_read"] == n_records and c["adds_up"] and c["rejected"] >= 1
    # every file the manifest records is in the bucket
    for rec in man["stages"].values():
        for f in rec["files"]:
            assert s3.exists(f"corpus-bucket/runs/x/{f}"), f
    # outputs read back from S3 by their readers: every input record in exactly one of them
    ordered = s3_lines(s3, "corpus-bucket/runs/x/ordered.jsonl")
    removed = s3_lines(s3, "corpus-bucket/runs/x/removed.jsonl")
    assert len(ordered) == c["kept"] and len(removed) == c["duplicates"] + c["rejected"]
    assert len(ordered) + len(removed) == n_records
    assert len({r["id"] for r in ordered} | {r.get("id", r.get("line")) for r in removed}) == n_records
    table = pq.read_table("corpus-bucket/runs/x/ordered.parquet", filesystem=s3)
    assert table.column("id").to_pylist() == [r["id"] for r in ordered]
    packed = man["stages"]["pack"]["files"]
    pq_files = [f for f in packed if f.endswith(".parquet")]
    contexts = sum(pq.read_table(f"corpus-bucket/runs/x/{f}", filesystem=s3).num_rows for f in pq_files)
    assert contexts == man["stages"]["pack"]["contexts"] > 0

    # a fresh working copy (another machine) reuses every stage from the URL
    again = contextsort.run([d], url, similarity="dense", context_length=512, pack_format=["megatron", "parquet"],
                            cache_dir=str(tmp_path / "cache2"))
    assert set(again.skipped) == set(man["stages"]) and again.location == url
    s3.invalidate_cache()
    assert json.loads(s3.cat_file("corpus-bucket/runs/x/manifest.json"))["skipped"] == again.skipped
    assert (again.run_dir / "ordered.jsonl").read_bytes() == s3.cat_file("corpus-bucket/runs/x/ordered.jsonl")
    # `contextsort pack` on the URL repacks there
    repacked = contextsort.pack_run(url, context_length=256)
    assert repacked.run_dir.parent == tmp_path / "xdg" / "contextsort" / "runs"
    s3.invalidate_cache()
    info = json.loads(s3.cat_file("corpus-bucket/runs/x/packed/pack.json"))
    assert info["context_length"] == 256 and repacked.location == url
    assert json.loads(s3.cat_file("corpus-bucket/runs/x/manifest.json"))["stages"]["pack"]["contexts"] == info["counts"]["contexts"]


def test_a_crash_keeps_the_finished_stages_at_the_url(s3, local_corpus, tmp_path):  # noqa: F811
    """kill -9 before the order stage commits: the URL keeps ingest .. dedup, and a run from a fresh
    working copy reuses them and ends with the same output as an uninterrupted run."""
    import contextsort

    d, n_records = local_corpus
    url = "s3://corpus-bucket/runs/crash"
    src = str(Path(__file__).resolve().parents[1] / "src")  # this checkout's package, in the child too
    env = dict(os.environ, CONTEXTSORT_CRASH_AT="order:before-commit", PYTHONPATH=src,
               FSSPEC_S3_ENDPOINT_URL=s3.storage_options["endpoint_url"], FSSPEC_S3_KEY="testing", FSSPEC_S3_SECRET="testing")
    p = subprocess.run([sys.executable, "-m", "contextsort.cli", "run", str(d), "-o", url, "--cache-dir",
                        str(tmp_path / "cache1"), "--similarity", "dense", "-q"], env=env, capture_output=True, text=True)
    assert p.returncode == -9, p.stderr[-2000:]
    s3.invalidate_cache()
    man = json.loads(s3.cat_file("corpus-bucket/runs/crash/manifest.json"))
    assert set(man["stages"]) == {"ingest", "tokenize", "embed", "neighbors", "dedup"}
    res = contextsort.run([d], url, similarity="dense", cache_dir=str(tmp_path / "cache2"))
    assert set(res.skipped) == {"ingest", "tokenize", "embed", "neighbors", "dedup"}
    assert res.counts["records_read"] == n_records and res.counts["adds_up"]
    ref = contextsort.run([d], tmp_path / "local", similarity="dense")
    assert np.array_equal(res.order, ref.order)
    s3.invalidate_cache()
    assert s3.cat_file("corpus-bucket/runs/crash/ordered.jsonl") == (ref.run_dir / "ordered.jsonl").read_bytes()


def test_a_foreign_prefix_needs_overwrite_and_a_bucket_is_never_cleared(s3, local_corpus, tmp_path):  # noqa: F811
    import contextsort
    from contextsort.errors import RunDirError

    d, _ = local_corpus
    s3.pipe("corpus-bucket/theirs/data.csv", b"a,b\n1,2\n")
    with pytest.raises(RunDirError, match="not a contextsort run"):
        contextsort.run([d], "s3://corpus-bucket/theirs", similarity="dense", cache_dir=str(tmp_path / "c1"))
    s3.invalidate_cache()
    assert s3.cat_file("corpus-bucket/theirs/data.csv") == b"a,b\n1,2\n"  # untouched
    with pytest.raises(RunDirError, match="whole bucket"):
        contextsort.run([d], "s3://corpus-bucket", similarity="dense", cache_dir=str(tmp_path / "c2"), overwrite=True)
    s3.put(str(d / "a.jsonl"), "corpus-bucket/theirs/in/a.jsonl")
    with pytest.raises(RunDirError, match="holds the input"):
        contextsort.run(["s3://corpus-bucket/theirs/in"], "s3://corpus-bucket/theirs", similarity="dense",
                        cache_dir=str(tmp_path / "c3"), overwrite=True)
    res = contextsort.run([d], "s3://corpus-bucket/theirs", similarity="dense", cache_dir=str(tmp_path / "c4"),
                          overwrite=True)
    s3.invalidate_cache()
    assert not s3.exists("corpus-bucket/theirs/data.csv") and not s3.exists("corpus-bucket/theirs/in/a.jsonl")
    assert len(s3_lines(s3, "corpus-bucket/theirs/ordered.jsonl")) == res.counts["kept"]


def test_default_working_copy_is_under_xdg_cache_home(monkeypatch, tmp_path):
    from contextsort.remote_run import default_cache_dir, open_run_directory

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a, b = default_cache_dir("s3://b/runs/x"), default_cache_dir("s3://b/runs/y")
    assert a.parent == tmp_path / "contextsort" / "runs" and a != b
    assert open_run_directory(f"file://{tmp_path}/run").path == tmp_path / "run"  # file:// is a local directory
