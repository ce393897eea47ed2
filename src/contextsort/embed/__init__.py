"""Embedders: turn texts into unit-norm float32 vectors.

Every embedder follows the `Embedder` protocol, so the pipeline does not care
which model produced the vectors. `get_embedder(spec)` builds one from a CLI
string such as "wordllama".
"""

from __future__ import annotations

from ..errors import DependencyMissing
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """encode(texts) -> float32 [n, dim], each row L2-normalised (cosine = dot)."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbedderUnavailable(DependencyMissing):
    """The embedder cannot be built (package missing, model not on disk, offline)."""


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm; all-zero rows stay zero (caller rejects them)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def get_embedder(spec: str, **options) -> Embedder:
    """Build an embedder from its spec string ("wordllama", "contriever:PATH", ...).

    Options the embedder does not use are ignored (device, fp16, batch_size).
    """
    name, _, arg = spec.partition(":")
    if name == "wordllama":
        from .wordllama import WordLlamaEmbedder

        return WordLlamaEmbedder(arg or None, **options)
    if name in ("sentence-transformers", "st"):
        from .neural import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(arg or None, **options)
    if name == "contriever":
        from .neural import ContrieverEmbedder

        return ContrieverEmbedder(arg or None, **options)
    if name == "model2vec":
        from .static import Model2VecEmbedder

        return Model2VecEmbedder(arg or None, **options)
    if name == "tfidf":
        # lexical, no model; corpus-fitted: the runner calls .fit(texts) before encoding
        from .tfidf import TfidfEmbedder

        return TfidfEmbedder(arg or None, **options)
    raise EmbedderUnavailable(
        f"unknown embedder '{spec}' (available: wordllama[:CONFIG], tfidf[:DIM], "
        "sentence-transformers:MODEL, contriever[:MODEL], model2vec:PATH)"
    )


# Dedup thresholds per embedder family, calibrated on the BBC sample with planted copies
# (benchmarks/dedup_threshold.py; docs/quality.md): the middle of the range that removes
# every planted / exact / rewritten copy and no distinct article. Cosine scales differ a
# lot between embedders, so one threshold for all would remove too much or too little.
DEDUP_THRESHOLDS = {
    "wordllama": 0.97,
    "tfidf": 0.9925,
    "sentence-transformers": 0.90,
    "contriever": 0.94,
    "model2vec": 0.99,
}


def default_dedup_threshold(embedder_spec: str) -> float:
    """The calibrated near-duplicate cosine threshold for an embedder spec ("tfidf:256", "st:PATH", ...).

    Sentence-transformers and contriever thresholds were calibrated on all-MiniLM-L6-v2 and
    model2vec's on a model distilled from it; other models of a family get the family's value
    (recalibrate with benchmarks/dedup_threshold.py).
    """
    name = embedder_spec.partition(":")[0]
    name = "sentence-transformers" if name == "st" else name
    if name not in DEDUP_THRESHOLDS:
        raise EmbedderUnavailable(f"unknown embedder '{embedder_spec}' (available: {', '.join(DEDUP_THRESHOLDS)})")
    return DEDUP_THRESHOLDS[name]
