"""Tokenizing as tasks per range of documents, joined by the driver: the same token store,
byte for byte, as one pass (with and without BOS, with and without `keep`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contextsort import pack as pack_module
from contextsort.corpus import DocStore
from contextsort.pack import TokenStream, batch_stop, tokenize_store
from contextsort.tokenize_parallel import PARTS_DIR, range_bounds
from contextsort.tokenizer import get_tokenizer

from test_tokens import _store, bbc_texts, llama2  # noqa: F401
from test_remote import local_corpus  # noqa: F401

TIMING = ("seconds", "tokens_per_second")


def reversed_mapper(fn, args_list):
    """Runs the tasks last first: the join must not depend on the order tasks finish in."""
    args = list(args_list)
    for i in reversed(range(len(args))):
        yield i, fn(*args[i])


def store_files(d: Path) -> tuple[bytes, np.ndarray, dict]:
    meta = json.loads((d / "meta.json").read_text())
    return (d / "stream.bin").read_bytes(), np.load(d / "doc_off.npy"), {k: v for k, v in meta.items() if k not in TIMING}


def test_ranges_cover_the_store_on_batch_boundaries(tmp_path, bbc_texts):  # noqa: F811
    store = _store(tmp_path, bbc_texts[:200])
    n = len(store)
    one_pass = [0]
    while one_pass[-1] < n:
        one_pass.append(batch_stop(store, one_pass[-1], n, 20_000))
    for workers in (2, 3, 8):
        bounds = range_bounds(store, 20_000, workers)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(x[1] == y[0] and x[0] < x[1] for x, y in zip(bounds, bounds[1:]))  # contiguous, none empty
        assert {a for a, _ in bounds} <= set(one_pass)  # each range starts where a one-pass batch starts
        assert 2 <= len(bounds) <= 2 * workers + 1
    assert range_bounds(store, 1 << 30, 4) == [(0, n)]  # one batch: nothing to share out


@pytest.mark.parametrize("bos,with_keep", [(False, False), (True, False), (True, True)])
def test_task_ranges_write_the_one_pass_store(tmp_path, bbc_texts, llama2, bos, with_keep):  # noqa: F811
    store = _store(tmp_path, bbc_texts[:300])
    n = len(store)
    keep = np.random.default_rng(0).random(n) < 0.7 if with_keep else None
    one = tokenize_store(store, llama2, tmp_path / "one", bos=bos, batch_bytes=30_000, keep=keep)
    seen = []
    many = tokenize_store(store, llama2, tmp_path / "many", bos=bos, batch_bytes=30_000, keep=keep,
                          mapper=reversed_mapper, workers=3, tokenizer_spec="llama2", progress=seen.append)
    assert one["tasks"] == 0 and many["tasks"] >= 4 and sum(seen) == n
    ids_one, off_one, meta_one = store_files(tmp_path / "one")
    ids_many, off_many, meta_many = store_files(tmp_path / "many")
    assert ids_one == ids_many and np.array_equal(off_one, off_many) and meta_one == meta_many
    assert len(off_many) == n + 1 and off_many[0] == 0 and np.all(np.diff(off_many) >= 1 + int(bos))
    assert off_many[-1] * np.dtype(meta_many["dtype"]).itemsize == len(ids_many) and meta_many["tokens"] == off_many[-1]
    if with_keep:  # a skipped document holds only its separators
        assert np.all(np.diff(off_many)[~keep] == 1 + int(bos)) and np.all(np.diff(off_many)[keep] > 1 + int(bos))
    assert not (tmp_path / "many.tmp").exists() and not (tmp_path / "many" / PARTS_DIR).exists()


def test_tasks_need_the_tokenizer_spec(tmp_path, bbc_texts, llama2):  # noqa: F811
    store = _store(tmp_path, bbc_texts[:50])
    with pytest.raises(ValueError, match="tokenizer_spec"):
        tokenize_store(store, llama2, tmp_path / "t", batch_bytes=5_000, mapper=reversed_mapper, workers=2)


@pytest.mark.ray
def test_ray_tokenizes_as_tasks(ray_local, local_corpus, tmp_path, monkeypatch):  # noqa: F811
    """Under --engine ray both token stores (llama2 and a packing tokenizer's, kept documents
    only) are written by tasks (the manifest says so, with the nodes) and equal one pass's."""
    import contextsort

    monkeypatch.setattr(pack_module, "TOKENIZE_BATCH_BYTES", 16_000)  # the driver hands it to the tasks
    d, _ = local_corpus
    res = contextsort.run([d], tmp_path / "run", engine="ray", similarity="dense", context_length=256, tokenizer="tiktoken:cl100k_base",
                          report=False)
    run = res.run_dir
    man = json.loads((run / "manifest.json").read_text())
    keep = (np.load(run / "dup_of.npy") < 0) & np.load(run / "embed_valid.npy")
    store = DocStore(run / "store")
    for stage, folder, spec, kept in (("tokenize", "tokens", "llama2", None), ("tokenize_pack", "tokens_pack", "tiktoken:cl100k_base", keep)):
        rec = man["stages"][stage]
        assert rec["engine"] == "ray" and rec["node_ids"] and rec["tasks"] >= 2, stage
        one = tokenize_store(store, get_tokenizer(spec), tmp_path / folder, keep=kept, bos=TokenStream.open(run / folder).meta["bos"])
        a, b = store_files(tmp_path / folder), store_files(run / folder)
        assert a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2] == b[2], stage
        assert one["tokens"] == rec["tokens"] and np.all(np.diff(b[1]) >= 1)
    assert res.counts["adds_up"] and man["stages"]["pack"]["contexts"] > 0
