"""Embed stage without torch: length batching, output written with explicit writes, crash + resume, errors."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from contextsort.config import Config
from contextsort.embed import EmbedderUnavailable, get_embedder
from contextsort.rowfile import RowFile
from contextsort.embed.batched import create_npy, encode_to_memmap, length_order, partial_paths, write_rows
import contextsort

from conftest import write_jsonl


class FakeEmbedder:
    """Deterministic vectors from each text's hash; can crash after `fail_after` batches."""

    name = "fake"

    def __init__(self, dim: int = 16, fail_after: int | None = None, bad: set[str] = frozenset()):
        self.dim = dim
        self.fail_after = fail_after
        self.bad = bad
        self.batches: list[list[str]] = []

    def vec(self, t: str) -> np.ndarray:
        if t in self.bad:
            return np.full(self.dim, np.nan if t.startswith("nan") else 0.0, dtype=np.float32)
        seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode(self, texts):
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.batches.append(list(texts))
        return np.stack([self.vec(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"doc {i} " + "word " * int(rng.integers(0, 50)) for i in range(n)]


def _encode(emb, texts, path, bs, dtype="float32", identity=None):
    lengths = np.array([len(t) for t in texts])
    return encode_to_memmap(emb, lambda idx: [texts[i] for i in idx], lengths, path, bs, dtype=dtype, identity=identity)


def test_length_order_is_stable_and_decreasing():
    lengths = np.array([3, 9, 3, 1, 9, 0])
    o = length_order(lengths)
    assert sorted(o.tolist()) == list(range(6))
    assert np.all(np.diff(lengths[o]) <= 0)
    assert o.tolist() == [1, 4, 0, 2, 3, 5]  # ties keep input order


def test_batches_sorted_by_length_and_rows_restored(tmp_path):
    texts = _texts(103)
    emb = FakeEmbedder()
    valid, stats = _encode(emb, texts, tmp_path / "e.npy", bs=10)
    out = np.load(tmp_path / "e.npy")
    assert out.dtype == np.float32 and out.shape == (103, 16)
    np.testing.assert_array_equal(out, np.stack([emb.vec(t) for t in texts]))  # original order restored
    assert valid.all() and stats.batches == 11 and stats.resumed_batches == 0
    maxes = [max(len(t) for t in b) for b in emb.batches]
    mins = [min(len(t) for t in b) for b in emb.batches]
    assert all(mins[i] >= maxes[i + 1] for i in range(len(maxes) - 1)), "batches not grouped by length"
    assert not any(p.exists() for p in partial_paths(tmp_path / "e.npy"))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("fail_after", [0, 1, 4, 10])
def test_crash_then_resume_is_identical(tmp_path, dtype, fail_after):
    texts = _texts(101, seed=1)
    _encode(FakeEmbedder(), texts, tmp_path / "ref.npy", bs=10, dtype=dtype)
    crashing = FakeEmbedder(fail_after=fail_after)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _encode(crashing, texts, tmp_path / "run.npy", bs=10, dtype=dtype)
    assert not (tmp_path / "run.npy").exists()
    part, state = partial_paths(tmp_path / "run.npy")
    assert json.loads(state.read_text())["batches_done"] == fail_after
    second = FakeEmbedder()
    valid, stats = _encode(second, texts, tmp_path / "run.npy", bs=10, dtype=dtype)
    assert stats.resumed_batches == fail_after
    assert len(second.batches) == 11 - fail_after  # only the unfinished batches were encoded
    assert (tmp_path / "run.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert (tmp_path / "run.npy").read_bytes() == memmap_reference(FakeEmbedder(), texts, tmp_path / "mm.npy", dtype)
    assert np.load(tmp_path / "run.npy").dtype == np.dtype(dtype)
    assert not part.exists() and not state.exists()


def memmap_reference(emb, texts, path, dtype: str) -> bytes:
    """The file the earlier writer (rows assigned through a numpy memory map) made for `texts`."""
    vecs = np.stack([emb.vec(t) for t in texts]).astype(dtype)
    with np.errstate(invalid="ignore"):
        norms = np.linalg.norm(vecs.astype(np.float32), axis=1)
    vecs[~(np.isfinite(norms) & (norms >= 0.5))] = 0
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=vecs.shape)
    mm[:] = vecs
    mm.flush()
    del mm
    return path.read_bytes()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("same_length", [False, True])  # True: every batch is one run of consecutive rows
def test_explicit_writes_give_the_memory_map_bytes(tmp_path, dtype, same_length):
    texts = [f"doc {i:04d}" for i in range(97)] if same_length else _texts(97, seed=3)
    texts[5], texts[40] = "zero doc", "nan doc"
    emb = FakeEmbedder(bad={"zero doc", "nan doc"})
    valid, stats = _encode(emb, texts, tmp_path / "e.npy", bs=16, dtype=dtype)
    assert (tmp_path / "e.npy").read_bytes() == memmap_reference(emb, texts, tmp_path / "ref.npy", dtype)
    assert valid.sum() == 95 and not valid[5] and not valid[40] and stats.batches == 7


def test_write_rows_places_scattered_and_consecutive_rows(tmp_path):
    path = tmp_path / "w.npy"
    create_npy(path, (10, 3), np.dtype("float32"))
    assert np.load(path).tolist() == np.zeros((10, 3)).tolist()
    rows = np.array([7, 2, 3, 4, 9, 0])
    values = np.arange(18, dtype=np.float32).reshape(6, 3)
    fd = os.open(path, os.O_RDWR)
    try:
        write_rows(fd, RowFile(path).offset, rows, values)
    finally:
        os.close(fd)
    out = np.load(path)
    expect = np.zeros((10, 3), np.float32)
    expect[rows] = values
    np.testing.assert_array_equal(out, expect)


def test_changed_plan_restarts_instead_of_mixing(tmp_path):
    texts = _texts(50, seed=2)
    with pytest.raises(RuntimeError):
        _encode(FakeEmbedder(fail_after=2), texts, tmp_path / "e.npy", bs=8, identity={"fp": "a"})
    again = FakeEmbedder()
    _, stats = _encode(again, texts, tmp_path / "e.npy", bs=8, identity={"fp": "b"})  # other config
    assert stats.resumed_batches == 0 and sum(map(len, again.batches)) == 50
    with pytest.raises(RuntimeError):
        _encode(FakeEmbedder(fail_after=2), texts, tmp_path / "f.npy", bs=8)
    again = FakeEmbedder()
    _, stats = _encode(again, texts, tmp_path / "f.npy", bs=5)  # other batch size
    assert stats.resumed_batches == 0
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), np.load(tmp_path / "e.npy"))


def test_zero_and_nan_vectors_are_invalid_and_zeroed(tmp_path):
    texts = _texts(20) + ["zero doc", "nan doc"]
    emb = FakeEmbedder(bad={"zero doc", "nan doc"})
    valid, _ = _encode(emb, texts, tmp_path / "e.npy", bs=7)
    out = np.load(tmp_path / "e.npy")
    assert valid.tolist() == [True] * 20 + [False, False]
    assert np.all(out[20:] == 0) and np.isfinite(out).all()


def test_wrong_shape_from_embedder_is_a_clear_error(tmp_path):
    class Bad(FakeEmbedder):
        def encode(self, texts):
            return np.zeros((len(texts), self.dim + 1), np.float32)

    with pytest.raises(ValueError, match="returned shape"):
        _encode(Bad(), _texts(5), tmp_path / "e.npy", bs=2)


def test_bad_dtype_rejected(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        _encode(FakeEmbedder(), _texts(3), tmp_path / "e.npy", bs=2, dtype="int8")


# -- runner integration ---------------------------------------------------------------

def _corpus(tmp_path, n=120):
    topics = ["football match goal", "stock market shares", "election vote party", "film actor award"]
    rows = [{"id": f"d{i}", "text": f"{topics[i % 4]} story {i} " + "x " * (i % 37), "label": str(i % 4)} for i in range(n)]
    return write_jsonl(tmp_path / "c.jsonl", rows)


def _cfg(**embed):
    c = Config()
    c.output.formats = ["jsonl"]
    for k, v in embed.items():
        setattr(c.embed, k, v)
    return c


def test_runner_embed_stage_resumes_after_crash(tmp_path, monkeypatch):
    import contextsort.embed as E

    src = _corpus(tmp_path)
    monkeypatch.setattr(E, "get_embedder", lambda spec, **kw: FakeEmbedder())
    ref = contextsort.run([src], tmp_path / "ref", _cfg(batch_size=16, dtype="float16"))
    assert ref.manifest["stages"]["embed"]["resumed_batches"] == 0

    crashing = FakeEmbedder(fail_after=3)
    monkeypatch.setattr(E, "get_embedder", lambda spec, **kw: crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        contextsort.run([src], tmp_path / "run", _cfg(batch_size=16, dtype="float16"))
    assert "embed" not in json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]

    second = FakeEmbedder()
    monkeypatch.setattr(E, "get_embedder", lambda spec, **kw: second)
    res = contextsort.run([src], tmp_path / "run", _cfg(batch_size=16, dtype="float16"))
    st = res.manifest["stages"]["embed"]
    assert st["resumed_batches"] == 3 and st["dtype"] == "float16" and st["batch_size"] == 16
    assert sum(map(len, second.batches)) == 120 - 3 * 16
    assert (tmp_path / "run" / "embeddings.npy").read_bytes() == (tmp_path / "ref" / "embeddings.npy").read_bytes()
    np.testing.assert_array_equal(res.order, ref.order)
    assert res.counts["adds_up"]


def test_dtype_change_recomputes_embeddings(tmp_path, monkeypatch):
    import contextsort.embed as E

    src = _corpus(tmp_path, 40)
    monkeypatch.setattr(E, "get_embedder", lambda spec, **kw: FakeEmbedder())
    contextsort.run([src], tmp_path / "r", _cfg(dtype="float32"))
    res = contextsort.run([src], tmp_path / "r", _cfg(dtype="float16"))
    assert "embed" not in res.skipped
    assert np.load(tmp_path / "r" / "embeddings.npy").dtype == np.float16
    res = contextsort.run([src], tmp_path / "r", _cfg(dtype="float16", batch_size=3))
    assert "embed" in res.skipped  # batch size does not change what is computed


def test_unloadable_model_fails_before_any_work(tmp_path):
    src = _corpus(tmp_path, 10)
    cfg = _cfg()
    cfg.embed.embedder = f"model2vec:{tmp_path / 'no_such_model'}"
    with pytest.raises(EmbedderUnavailable):
        contextsort.run([src], tmp_path / "run", cfg)
    assert not (tmp_path / "run" / "store").exists(), "ingest ran before the embedder was checked"


def test_cli_reports_unloadable_model(tmp_path, capsys):
    from contextsort.cli import main

    src = _corpus(tmp_path, 10)
    rc = main(["run", str(src), "-o", str(tmp_path / "run"), "-q", "--embedder", f"sentence-transformers:{tmp_path}/missing/model"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "contextsort: error:" in err and ("missing" in err or "not installed" in err)


@pytest.mark.parametrize("spec", ["nosuch", "model2vec", "sentence-transformers"])
def test_bad_specs(spec):
    with pytest.raises(EmbedderUnavailable):
        get_embedder(spec)


def test_cli_options_reach_config():

    from contextsort import cli

    p = cli.build_parser()
    c = cli.config_from_args(p.parse_args(["run", "x", "-o", "y", "--device", "cpu", "--batch-size", "8", "--embed-dtype", "float16"]))
    assert (c.embed.device, c.embed.batch_size, c.embed.dtype) == ("cpu", 8, "float16")
    c = cli.config_from_args(p.parse_args(["run", "x", "-o", "y"]))
    assert (c.embed.device, c.embed.batch_size, c.embed.dtype) == ("auto", None, "float32")


@pytest.mark.parametrize("embedder", ["wordllama", "tfidf:32"])
def test_kill_9_mid_embed_then_rerun_gives_identical_files(tmp_path, embedder):
    """A real SIGKILL half-way through the embed stage (fault hook), then the same command again
    (tfidf: a corpus-fitted embedder, refitted on resume)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    src_dir = str(Path(__file__).resolve().parents[1] / "src")
    src = _corpus(tmp_path, 200)

    def cli(out, **env):
        args = [sys.executable, "-m", "contextsort.cli", "run", str(src), "-o", str(out), "-q", "--batch-size", "16",
                "--embed-dtype", "float16", "--format", "jsonl", "--embedder", embedder]
        return subprocess.run(args, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": src_dir, **env})

    assert cli(tmp_path / "ref").returncode == 0
    p = cli(tmp_path / "run", CONTEXTSORT_CRASH_AT="embed:mid")
    assert p.returncode == -9, p.stderr
    part, state = partial_paths(tmp_path / "run" / "embeddings.npy")
    done = json.loads(state.read_text())["batches_done"]
    assert part.exists() and not (tmp_path / "run" / "embeddings.npy").exists() and 0 < done < 13
    p = cli(tmp_path / "run")
    assert p.returncode == 0, p.stderr
    st = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["embed"]
    assert st["resumed_batches"] == done
    for name in ("embeddings.npy", "embed_valid.npy", "order.npy", "ordered.jsonl", "removed.jsonl"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


def test_reused_embeddings_need_no_model(tmp_path, monkeypatch):
    """A rerun that reuses the embeddings must not load (or fail to load) the model."""
    import contextsort.embed as E

    src = _corpus(tmp_path, 30)
    monkeypatch.setattr(E, "get_embedder", lambda spec, **kw: FakeEmbedder())
    contextsort.run([src], tmp_path / "r", _cfg())

    def unavailable(spec, **kw):
        raise EmbedderUnavailable("offline")

    monkeypatch.setattr(E, "get_embedder", unavailable)
    res = contextsort.run([src], tmp_path / "r", _cfg())
    assert "embed" in res.skipped
