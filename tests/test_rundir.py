"""The run directory is owned by one run, always matches its manifest, and never costs user data."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import contextsort
from contextsort.cli import main
from contextsort.errors import RunDirError
from contextsort.rundir import RunDirectory

SRC = str(Path(__file__).resolve().parents[1] / "src")


def cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-m", "contextsort.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """80 real BBC articles with labels, one exact copy and one malformed line."""
    from contextsort.sample import bbc_news_path

    root = bbc_news_path()
    rows = []
    for p in sorted(root.rglob("*.txt"))[::25][:80]:
        try:
            rows.append({"id": p.relative_to(root).as_posix(), "text": p.read_text(encoding="utf-8"), "label": p.parent.name})
        except UnicodeDecodeError:
            continue
    rows.append(dict(rows[3], id="copy-of-3"))
    d = tmp_path_factory.mktemp("corpus")
    path = d / "in.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    return path


def test_second_run_into_a_locked_directory_exits_2_naming_the_pid(tmp_path, corpus):
    run = tmp_path / "run"
    with RunDirectory(run, [str(corpus)]):
        p = cli("run", str(corpus), "-o", str(run), "-q")
    assert p.returncode == 2, p.stderr
    assert f"in use by another contextsort run (pid {os.getpid()})" in p.stderr and "Traceback" not in p.stderr
    # the lock was released: a run now succeeds
    assert cli("run", str(corpus), "-o", str(run), "-q").returncode == 0


def test_lock_of_a_killed_run_is_taken_over(tmp_path, corpus):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from contextsort.rundir import RunDirectory\n"
        "d = RunDirectory(sys.argv[2]).__enter__(); print('locked', flush=True); time.sleep(600)"), SRC, str(run)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert cli("run", str(corpus), "-o", str(run), "-q").returncode == 2
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    p = cli("run", str(corpus), "-o", str(run), "-q")
    assert p.returncode == 0, p.stderr


def test_concurrent_starts_never_corrupt_the_output(tmp_path, corpus):
    ref = tmp_path / "ref"
    assert cli("run", str(corpus), "-o", str(ref), "-q").returncode == 0
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC}
    args = [sys.executable, "-m", "contextsort.cli", "run", str(corpus), "-o", str(run), "-q"]
    procs = []
    for delay in (0.0, 0.3, 0.9):
        time.sleep(delay)
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    codes = [p.wait(timeout=300) for p in procs]
    assert all(c in (0, 2) for c in codes) and 0 in codes, codes
    for p, c in zip(procs, codes):
        if c == 2:
            assert "in use by another contextsort run" in p.stderr.read()
    # whatever ran, a final run is up to date or completes, and equals a clean run
    assert cli("run", str(corpus), "-o", str(run), "-q").returncode == 0
    for name in ("ordered.jsonl", "ordered.parquet", "removed.jsonl"):
        assert (run / name).read_bytes() == (ref / name).read_bytes(), name


def test_removed_jsonl_follows_an_edit_of_bad_lines_only(tmp_path, corpus):
    path = tmp_path / "in.jsonl"
    path.write_bytes(corpus.read_bytes())
    run = tmp_path / "run"
    r1 = contextsort.run([path], run)
    with open(path, "a") as fh:
        fh.write("[1, 2]\n{\"text\": 5}\n")
    r2 = contextsort.run([path], run)
    assert "embed" in r2.skipped and "write" not in r2.skipped
    removed = [json.loads(x) for x in (run / "removed.jsonl").read_text().splitlines()]
    assert len(removed) == r2.counts["duplicates"] + r2.counts["rejected"] == r1.counts["duplicates"] + r1.counts["rejected"] + 2
    assert r2.counts["adds_up"]


def test_outputs_of_stages_that_no_longer_apply_are_removed(tmp_path, corpus):
    run = tmp_path / "run"
    contextsort.run([corpus], run, context_length=256, pack_format=["numpy"])
    assert (run / "packed" / "pack.json").exists() and (run / "ordered.parquet").exists()
    res = contextsort.run([corpus], run, format=["jsonl"])
    assert not (run / "packed").exists() and not (run / "ordered.parquet").exists()
    assert "pack" not in res.manifest["stages"] and "ordered.parquet" not in res.manifest["stages"]["write"]["files"]
    assert (run / "tokens").exists()  # still used: the embedder and the lexical signal read it
    assert (run / "ordered.jsonl").exists()


def test_edit_keeping_size_and_mtime_is_seen(tmp_path, corpus):
    path = tmp_path / "in.jsonl"
    path.write_bytes(corpus.read_bytes())
    run = tmp_path / "run"
    contextsort.run([path], run)
    st = path.stat()
    data = path.read_bytes()
    i = data.index(b"the ")
    path.write_bytes(data[:i] + b"THE " + data[i + 4:])  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = contextsort.run([path], run)
    assert "ingest" not in res.skipped and "embed" not in res.skipped


def test_overwrite_never_deletes_an_input(tmp_path, corpus):
    d = tmp_path / "data"
    d.mkdir()
    inp = d / "corpus.jsonl"
    inp.write_bytes(corpus.read_bytes())
    p = cli("run", str(inp), "-o", str(d), "--overwrite", "-q")
    assert p.returncode == 2 and "holds the input" in p.stderr
    assert inp.read_bytes() == corpus.read_bytes()


@pytest.mark.parametrize("target", ["", ".", "HOME"])
def test_overwrite_refuses_dangerous_targets(tmp_path, corpus, monkeypatch, capsys, target):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("precious")
    if target == "HOME":
        monkeypatch.setenv("HOME", str(tmp_path))
        target = str(tmp_path)
    assert main(["run", str(corpus), "-o", target, "--overwrite", "-q"]) == 2
    assert (tmp_path / "keep.txt").read_text() == "precious"
    assert "Traceback" not in capsys.readouterr().err


def test_run_killed_while_writing_its_first_manifest_resumes(tmp_path, corpus):
    """A kill between creating the directory and renaming its first manifest leaves the lock
    and manifest.json.tmp: the next run must take the directory as its own (a kill -9 test
    met this once), while anything else in it still makes it foreign."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("12345")
    (run / "manifest.json.tmp").write_text('{"contextsort_ru')  # cut off mid-write
    p = cli("run", str(corpus), "-o", str(run), "-q")
    assert p.returncode == 0, p.stderr
    assert json.loads((run / "manifest.json").read_text())["contextsort_run"] == 1
    assert not (run / "manifest.json.tmp").exists() and (run / "ordered.jsonl").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json.tmp").write_text("{}")
    (other / "notes.txt").write_text("mine")
    assert cli("run", str(corpus), "-o", str(other), "-q").returncode == 2
    assert (other / "notes.txt").read_text() == "mine"


def test_foreign_manifest_is_not_taken_for_a_run(tmp_path, corpus, capsys):
    d = tmp_path / "theirs"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"name": "someone else's"}))
    assert main(["run", str(corpus), "-o", str(d), "-q"]) == 2
    assert "not a contextsort run" in capsys.readouterr().err
    assert json.loads((d / "manifest.json").read_text()) == {"name": "someone else's"}


def test_disk_full_is_one_line_and_resumes(tmp_path, corpus, monkeypatch, capsys):
    import contextsort.atomic as atomic

    run = tmp_path / "run"
    real = atomic.os.fsync
    state = {"n": 0}

    def full(fd):
        state["n"] += 1
        if state["n"] == 12:  # some file a few stages in
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", full)
    assert main(["run", str(corpus), "-o", str(run), "-q"]) == 2
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "rerun the same command" in err and "Traceback" not in err
    assert err.count("\n") == 1
    monkeypatch.setattr(atomic.os, "fsync", real)
    done_before = set(json.loads((run / "manifest.json").read_text())["stages"])
    assert done_before  # some stages were finished and are kept
    res = contextsort.run([corpus], run)
    assert done_before <= set(res.skipped) and res.counts["adds_up"]


def test_run_directory_that_is_a_file(tmp_path, corpus):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunDirError, match="not a directory"):
        contextsort.run([corpus], f)


def test_run_directory_inside_an_input_folder_is_never_read(tmp_path, corpus):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "in.jsonl").write_bytes(corpus.read_bytes())
    reads = []
    for _ in range(3):
        res = contextsort.run([folder], folder / "run")
        reads.append(res.counts["records_read"])
    assert reads[0] == reads[1] == reads[2] == len(corpus.read_text().splitlines())
    assert "ingest" in res.skipped  # its own outputs do not even change the input fingerprint


def test_an_input_that_yields_nothing_is_warned_about(tmp_path, corpus):
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"content": "a text under another field name"}) + "\n")
    p = cli("run", str(corpus), str(other), "-o", str(tmp_path / "run"), "-q")
    assert p.returncode == 0, p.stderr
    assert f"{other}: no usable document" in p.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    per_input = {c["input"]: c for c in manifest["stages"]["ingest"]["inputs"]}
    assert per_input[str(other)]["documents"] == 0 and per_input[str(other)]["rejected"] == 1
    # the rejected record says which fields it has
    removed = [json.loads(x) for x in (tmp_path / "run" / "removed.jsonl").read_text().splitlines()]
    assert any("content" in r["reason"] for r in removed if r.get("source") == str(other))
    p = cli("run", str(corpus), str(other), "-o", str(tmp_path / "strict"), "-q", "--strict")
    assert p.returncode == 2
