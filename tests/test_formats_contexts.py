"""Token-context formats, each read back by its own reader: Megatron (byte layout, and
megatron-core's IndexedDataset/GPTDataset when installed), Parquet (pyarrow, HF datasets),
numpy; sharding by size."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import contextsort
from contextsort.formats.contexts import load_index, shard_layout
from contextsort.formats.megatron import MegatronReader, read_index, write_index

from test_pack import _big_vocab_tokenizer, _contexts_from_numpy, _copy_run, small_run  # noqa: F401

ALL = ["megatron", "parquet", "numpy"]


@pytest.fixture(scope="module")
def packed(small_run, tmp_path_factory):  # noqa: F811
    """The small run packed in every format (L = 200, boundary mode, two shards or more)."""
    run_dir = _copy_run(small_run.run_dir, tmp_path_factory.mktemp("packed"))
    contextsort.pack_run(run_dir, context_length=200, mode="boundary", formats=ALL, shard_size=200 * 2 * 7)
    return run_dir / "packed"


def _expected_idx_bytes(n_seq: int, L: int, code: int, itemsize: int) -> bytes:
    """The .idx file as megatron-core's _IndexWriter lays it out (written here from its spec)."""
    out = b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", code)
    out += struct.pack("<Q", n_seq) + struct.pack("<Q", n_seq + 1)
    out += b"".join(struct.pack("<i", L) for _ in range(n_seq))
    out += b"".join(struct.pack("<q", i * L * itemsize) for i in range(n_seq))
    out += b"".join(struct.pack("<q", i) for i in range(n_seq + 1))
    return out


def test_megatron_layout_byte_for_byte(packed):
    info = json.loads((packed / "pack.json").read_text())
    L = info["context_length"]
    _, toks, _ = _contexts_from_numpy(packed)
    files = info["files"]["megatron"]
    prefixes = sorted({f.rsplit(".", 1)[0] for f in files})
    assert len(prefixes) == info["shards"] >= 2
    seen = 0
    for p in prefixes:
        bin_bytes = (packed / (p + ".bin")).read_bytes()
        n = len(bin_bytes) // (2 * L)
        assert (packed / (p + ".idx")).read_bytes() == _expected_idx_bytes(n, L, 8, 2)  # 8: uint16
        assert bin_bytes == toks[seen:seen + n].astype("<u2").tobytes()
        seen += n
    assert seen == len(toks) == info["counts"]["contexts"]


def test_megatron_reader_and_sidecar(packed):
    info = json.loads((packed / "pack.json").read_text())
    _, toks, idx = _contexts_from_numpy(packed)
    prefixes = sorted({f.rsplit(".", 1)[0] for f in info["files"]["megatron"]})
    rows = [r for p in prefixes for r in MegatronReader(packed / p)]
    assert (np.stack(rows) == toks).all()
    side = load_index(packed / (prefixes[0] + ".npz"))
    assert (side["length"] == idx["length"][0]).all() and (side["doc_offsets"] == idx["doc_offsets"][0]).all()


def test_megatron_core_reads_it(packed):
    """megatron-core's own IndexedDataset, and GPTDataset samples == our contexts."""
    pytest.importorskip("torch")
    mid = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    info = json.loads((packed / "pack.json").read_text())
    L = info["context_length"]
    _, toks, _ = _contexts_from_numpy(packed)
    prefixes = sorted({f.rsplit(".", 1)[0] for f in info["files"]["megatron"]})
    got = []
    for p in prefixes:
        ds = mid.IndexedDataset(str(packed / p))
        assert (ds.sequence_lengths == L).all() and (ds.document_indices == np.arange(len(ds) + 1)).all()
        got += [np.array(ds[i]) for i in range(len(ds))]  # copies: the mmap closes with ds
    assert (np.stack(got) == toks).all()

    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    class Tok:  # what GPTDataset reads of a tokenizer
        eod = 2
        pad = 0  # <unk>: never in the data, so no token is altered
        vocab_size = 32000
        unique_identifiers = {"class": "Tok"}

    cfg = GPTDatasetConfig(
        random_seed=1, sequence_length=L, blend=([str(packed / prefixes[0])], None), split="1,0,0", tokenizer=Tok(),
        reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
        add_extra_token_to_sequence=False, mmap_bin_files=True, path_to_cache=str(packed.parent / "mcache"),
    )
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [None, None, None], lambda: True, cfg).build()
    rows = {bytes(np.ascontiguousarray(r)) for r in np.asarray(got[: len(mid.IndexedDataset(str(packed / prefixes[0])))])}
    for i in range(len(train)):
        assert bytes(train[i]["tokens"].numpy().astype(np.uint16)) in rows  # each sample is one whole context


def test_megatron_index_roundtrip_int32(tmp_path):
    lengths = np.array([3, 5, 2])
    write_index(tmp_path / "x.idx", lengths, np.array([0, 2, 3]), np.int32)
    r = read_index(tmp_path / "x.idx")
    assert r["dtype"] == np.int32 and r["sequence_lengths"].tolist() == [3, 5, 2]
    assert r["sequence_pointers"].tolist() == [0, 12, 32] and r["document_indices"].tolist() == [0, 2, 3]


def test_big_vocabulary_formats(small_run, tmp_path):  # noqa: F811
    """Vocabulary over 65,536: uint32 tokens (numpy, parquet) and int32 (Megatron has no uint32)."""
    import pyarrow.parquet as pq

    tok = _big_vocab_tokenizer(tmp_path)
    run_dir = _copy_run(small_run.run_dir, tmp_path)
    contextsort.pack_run(run_dir, context_length=100, tokenizer=str(tok), formats=ALL)
    packed = run_dir / "packed"
    info = json.loads((packed / "pack.json").read_text())
    assert info["dtype"] == "uint32" and info["tokenizer"]["vocab_size"] > 1 << 16
    _, toks, _ = _contexts_from_numpy(packed)
    meg = read_index(packed / "megatron" / "contexts_00000.idx")
    assert meg["dtype"] == np.int32
    assert (np.fromfile(packed / "megatron" / "contexts_00000.bin", dtype="<i4").reshape(-1, 100) == toks).all()
    t = pq.read_table(packed / info["files"]["parquet"][0])
    assert str(t.schema.field("input_ids").type.value_type) == "uint32"


def test_parquet_with_pyarrow(packed):
    import pyarrow.parquet as pq

    info = json.loads((packed / "pack.json").read_text())
    _, toks, idx = _contexts_from_numpy(packed)
    files = info["files"]["parquet"]
    assert files == [f"parquet/train-{i:05d}-of-{len(files):05d}.parquet" for i in range(len(files))]
    t = pq.read_table([packed / f for f in files][0])
    for f in files[1:]:
        import pyarrow as pa

        t = pa.concat_tables([t, pq.read_table(packed / f)])
    assert t.column_names == ["input_ids", "length", "doc_offsets", "doc_positions", "context"]
    ids = np.array(t.column("input_ids").to_pylist(), dtype=np.uint16)
    assert (ids == toks).all()
    assert t.column("length").to_pylist() == np.concatenate(idx["length"]).tolist()
    offs = t.column("doc_offsets").to_pylist()
    flat = np.concatenate(idx["doc_offsets"]).tolist()
    assert [x for row in offs for x in row] == flat
    assert t.column("context").to_pylist() == np.concatenate(idx["context"]).tolist()


def test_parquet_with_hf_datasets(packed, tmp_path):
    datasets = pytest.importorskip("datasets")
    _, toks, idx = _contexts_from_numpy(packed)
    ds = datasets.load_dataset(str(packed / "parquet"), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == len(toks)
    assert set(ds.column_names) >= {"input_ids", "doc_offsets"}
    ds = ds.with_format("numpy")
    assert (np.stack(list(ds["input_ids"])) == toks).all()
    ds2 = datasets.load_dataset("parquet", data_files=str(packed / "parquet" / "*.parquet"), split="train",
                                cache_dir=str(tmp_path / "hf2"))
    assert ds2[0]["doc_offsets"][0] == 0 and ds2[0]["length"] == int(idx["length"][0][0])


def test_numpy_memmap(packed):
    from contextsort.formats.numpy_contexts import open_contexts

    info = json.loads((packed / "pack.json").read_text())
    L = info["context_length"]
    first = open_contexts(packed / info["files"]["numpy"][0], L, info["dtype"])
    assert first.shape[1] == L and first.dtype == np.uint16


def test_shards_split_by_size_alike(packed):
    info = json.loads((packed / "pack.json").read_text())
    L = info["context_length"]
    per = info["contexts_per_shard"]
    assert per == 7 and info["shards"] == -(-info["counts"]["contexts"] // 7)
    sizes_np = [(packed / f).stat().st_size // (2 * L) for f in info["files"]["numpy"] if f.endswith(".bin")]
    sizes_meg = [(packed / f).stat().st_size // (2 * L) for f in info["files"]["megatron"] if f.endswith(".bin")]
    import pyarrow.parquet as pq

    sizes_pq = [pq.ParquetFile(packed / f).metadata.num_rows for f in info["files"]["parquet"]]
    assert sizes_np == sizes_meg == sizes_pq
    assert all(s == per for s in sizes_np[:-1]) and 1 <= sizes_np[-1] <= per
    assert sum(sizes_np) == info["counts"]["contexts"]


def test_shard_layout():
    assert shard_layout(10, 100, np.uint16, None).n_shards == 1
    lay = shard_layout(10, 100, np.uint16, 450)
    assert (lay.per_shard, lay.n_shards, lay.bounds(4)) == (2, 5, (8, 10))
    assert shard_layout(10, 100, np.uint32, 1).per_shard == 1  # at least one context
    assert shard_layout(0, 100, np.uint16, 450).n_shards == 1
