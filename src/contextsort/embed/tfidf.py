"""TF-IDF embedder: a lexical signal with no model, as dense unit-norm vectors.

Hashed TF-IDF vectors (contextsort.similarity) reduced to `dim` dimensions by truncated
SVD (latent semantic analysis), then L2-normalised. IDF and the SVD are corpus
statistics, so the embedder must see the corpus first: the runner calls `fit(texts)`
over every document before encoding (an unfitted embedder fits on what `encode` gets).
SVD rather than a random projection: on the BBC sample a 256-d sparse random projection
kept only 0.78 top-1 label agreement (exact TF-IDF: 0.96, SVD: 0.97), and on the Jargon
File 0.12 top-1 cross-reference rate (exact: 0.62, SVD: 0.54).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from . import EmbedderUnavailable, l2_normalize

FIT_SAMPLE = 50_000  # documents the SVD is fitted on (IDF always uses every document)


class TfidfEmbedder:
    name = "tfidf"

    def __init__(self, dim: int | str | None = None, seed: int = 0, **_):
        try:
            import sklearn  # noqa: F401

            from ..similarity import LexicalModel, term_counts  # noqa: F401
        except ImportError as e:
            raise EmbedderUnavailable("the tfidf embedder needs scikit-learn: pip install scikit-learn scipy") from e
        try:
            self.dim = int(dim) if dim else 256
        except ValueError:
            raise EmbedderUnavailable(f"tfidf embedder: dimension must be an integer, got '{dim}'") from None
        if self.dim < 1:
            raise EmbedderUnavailable(f"tfidf embedder: dimension must be positive, got {self.dim}")
        self.seed = seed
        self.name = f"tfidf:{self.dim}"
        self._model = None
        self._cols = None  # hashed feature ids seen in the fitted corpus (SVD input columns)
        self._components = None  # float32 [dim_eff, len(cols)]

    def fit(self, texts: Iterable[str]) -> "TfidfEmbedder":
        """Document frequencies from every text; SVD on up to FIT_SAMPLE of them (seeded)."""
        from sklearn.decomposition import TruncatedSVD

        from ..similarity import LexicalModel, term_counts

        counts = term_counts(texts)
        self._model = LexicalModel.fit(counts, "tfidf")
        n = counts.shape[0]
        if n > FIT_SAMPLE:
            rows = np.sort(np.random.default_rng(self.seed).choice(n, FIT_SAMPLE, replace=False))
            counts = counts[rows]
        x = self._model.transform(counts)
        self._cols = np.unique(x.indices)
        x = x[:, self._cols]
        k = max(1, min(self.dim, x.shape[0] - 1, x.shape[1] - 1))
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5, random_state=self.seed)
        svd.fit(x)
        self._components = np.ascontiguousarray(svd.components_, dtype=np.float32)
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from ..similarity import term_counts

        texts = list(texts)
        if self._model is None:
            self.fit(texts)
        x = self._model.transform(term_counts(texts))[:, self._cols]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, : self._components.shape[0]] = np.asarray(x @ self._components.T, dtype=np.float32)
        return l2_normalize(out)
