"""A run directory at an s3:// URL, on a real S3-compatible server (moto in server mode on
127.0.0.1, test_remote's fixture): outputs read back from S3 by their own readers, resume
from a fresh working copy, a crash keeps the finished stages, a foreign prefix is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from test_remote import local_corpus, s3  # noqa: F401

STAGES = {"ingest", "tokenize", "embed", "neighbors", "dedup", "order", "write", "pack", "metrics", "report"}


def s3_lines(fs, path: str) -> list[dict]:
    with fs.open(path, "rb") as fh:
        return [json.loads(line) for line in fh.read().decode("utf-8").splitlines()]


def test_run_to_s3_reads_back_and_resumes_from_a_fresh_cache(s3, local_corpus, tmp_path):  # noqa: F811
    import pyarrow.parquet as pq

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
