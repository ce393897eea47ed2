"""Inputs as fsspec URLs, read from a real S3-compatible server (moto in server mode on 127.0.0.1)."""

from __future__ import annotations

import gzip
import json
import socket
import urllib.request

import numpy as np
import pytest

from conftest import write_jsonl


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 and an s3fs filesystem talking to it."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import fsspec
    from s3fs import S3FileSystem

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    # moto keeps its buckets in this process, shared by every server it starts: begin empty;
    # and s3fs caches filesystems (with their listings) by their options
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST")).close()
    S3FileSystem.clear_instance_cache()
    old = fsspec.config.conf.get("s3")
    fsspec.config.conf["s3"] = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
    try:
        fs = fsspec.filesystem("s3")
        fs.mkdir("corpus-bucket")
        yield fs
    finally:
        if old is None:
            fsspec.config.conf.pop("s3", None)
        else:
            fsspec.config.conf["s3"] = old
        server.stop()
        S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def local_corpus(tmp_path_factory, bbc_path):
    """A small BBC folder: one JSONL with a bad line, one gzipped JSONL."""
    d = tmp_path_factory.mktemp("corpus") / "corpus"
    d.mkdir()
    rows = []
    for topic in sorted(p for p in bbc_path.iterdir() if p.is_dir()):
        for f in sorted(topic.iterdir())[:60]:
            rows.append({"id": f"{topic.name}/{f.name}", "label": topic.name,
                         "text": f.read_bytes().decode("utf-8", errors="replace")})
    write_jsonl(d / "a.jsonl", rows[:150])
    with open(d / "a.jsonl", "a") as fh:
        fh.write('{"id": "broken", "text": \n')  # a bad line: rejected with file and line
    with gzip.open(d / "b.jsonl.gz", "wt", encoding="utf-8") as fh:
        for r in rows[150:]:
            fh.write(json.dumps(r) + "\n")
    return d, len(rows) + 1


def test_s3_folder_input_equals_local_input(s3, local_corpus, tmp_path):
    import contextsort

    d, n_records = local_corpus
    s3.put(str(d) + "/", "corpus-bucket/c1/", recursive=True)
    local = contextsort.run([d], tmp_path / "local", similarity="dense")
    remote = contextsort.run(["s3://corpus-bucket/c1"], tmp_path / "remote", similarity="dense")
    assert remote.counts == local.counts and remote.counts["records_read"] == n_records
    assert remote.counts["adds_up"]
    assert np.array_equal(remote.order, local.order)
    ids = [json.loads(line)["id"] for line in open(tmp_path / "remote" / "ordered.jsonl")]
    assert ids == [json.loads(line)["id"] for line in open(tmp_path / "local" / "ordered.jsonl")]
    # the bad line is rejected, named by its URL and line, not by a downloaded copy
    rejects = [json.loads(line) for line in open(tmp_path / "remote" / "rejects.jsonl")]
    assert [(r["source"], r["line"]) for r in rejects] == [("s3://corpus-bucket/c1/a.jsonl", 151)]
    assert not (tmp_path / "remote" / "remote_inputs").exists()  # downloads removed once the store holds them


def test_s3_input_rerun_skips_ingest_until_an_object_changes(s3, local_corpus, tmp_path):
    import contextsort

    d, _ = local_corpus
    s3.put(str(d) + "/", "corpus-bucket/c2/", recursive=True)
    url = "s3://corpus-bucket/c2"
    first = contextsort.run([url], tmp_path / "run", similarity="dense")
    again = contextsort.run([url], tmp_path / "run", similarity="dense")
    assert "ingest" in again.skipped and np.array_equal(again.order, first.order)
    with s3.open("corpus-bucket/c2/b.jsonl.gz", "wb") as fh:  # one more document in one object
        fh.write(gzip.compress(gzip.decompress((d / "b.jsonl.gz").read_bytes())
                               + (json.dumps({"id": "new", "label": "tech", "text": "a brand new document about chips"}) + "\n").encode()))
    changed = contextsort.run([url], tmp_path / "run", similarity="dense")
    assert "ingest" not in changed.skipped
    assert changed.counts["records_read"] == first.counts["records_read"] + 1 and changed.counts["adds_up"]


def test_missing_s3_object_is_a_clear_input_error(s3, tmp_path):
    import contextsort
    from contextsort.errors import InputError

    with pytest.raises(InputError, match="s3://corpus-bucket/nothing-here"):
        contextsort.run(["s3://corpus-bucket/nothing-here"], tmp_path / "run")


def test_file_url_is_a_local_path(local_corpus, tmp_path):
    import contextsort

    d, n_records = local_corpus
    res = contextsort.run([f"file://{d}"], tmp_path / "run", similarity="dense")
    assert res.counts["records_read"] == n_records and res.counts["adds_up"]


def test_saved_hf_dataset_equals_the_same_rows_as_jsonl(local_corpus, tmp_path):
    """`Dataset.save_to_disk` folders (and DatasetDicts, split by split) are inputs."""
    datasets = pytest.importorskip("datasets")
    import contextsort

    d, _ = local_corpus
    rows = [json.loads(line) for line in gzip.open(d / "b.jsonl.gz", "rt")]
    half = len(rows) // 2
    write_jsonl(tmp_path / "rows.jsonl", rows)
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:half]),
                          "test": datasets.Dataset.from_list(rows[half:])}).save_to_disk(str(tmp_path / "hf_dict"))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    ref = contextsort.run([tmp_path / "rows.jsonl"], tmp_path / "ref", similarity="dense")
    for name in ("hf", "hf_dict"):
        res = contextsort.run([tmp_path / name], tmp_path / f"run_{name}", similarity="dense")
        assert res.counts == ref.counts and res.counts["records_read"] == len(rows)
        assert np.array_equal(res.order, ref.order)
        ids = [json.loads(line)["id"] for line in open(tmp_path / f"run_{name}" / "ordered.jsonl")]
        assert ids == [json.loads(line)["id"] for line in open(tmp_path / "ref" / "ordered.jsonl")]
    # a changed dataset is seen (ingest reruns), an unchanged one is not re-read
    again = contextsort.run([tmp_path / "hf"], tmp_path / "run_hf", similarity="dense")
    assert "ingest" in again.skipped
    datasets.Dataset.from_list(rows[:half]).save_to_disk(str(tmp_path / "hf2"))
    import shutil

    shutil.rmtree(tmp_path / "hf")
    shutil.move(str(tmp_path / "hf2"), str(tmp_path / "hf"))
    changed = contextsort.run([tmp_path / "hf"], tmp_path / "run_hf", similarity="dense")
    assert "ingest" not in changed.skipped and changed.counts["records_read"] == half
