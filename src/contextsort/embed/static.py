"""model2vec static models on disk: a token-vector table, no torch, thousands of docs/s on CPU.

Needs the optional `model2vec` extra. Only local directories are accepted, so a run never
reaches for the network; distil or download a model once with model2vec itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from . import EmbedderUnavailable, l2_normalize


class Model2VecEmbedder:
    def __init__(self, path: str | None = None, batch_size: int | None = None, max_tokens: int = 512, **_):
        if not path:
            raise EmbedderUnavailable("model2vec needs a model directory: --embedder model2vec:PATH")
        try:
            from model2vec import StaticModel
        except ImportError as e:
            raise EmbedderUnavailable("the 'model2vec' package is not installed: pip install 'contextsort[model2vec]'") from e
        p = Path(path).expanduser()
        if not p.is_dir():
            raise EmbedderUnavailable(f"model2vec model directory does not exist: {p}")
        try:
            self._model = StaticModel.from_pretrained(p, normalize=False, force_download=False)
        except Exception as e:
            raise EmbedderUnavailable(f"cannot load model2vec model from {p}: {type(e).__name__}: {e}") from e
        self.dim = int(self._model.dim)
        self.max_tokens = max_tokens
        self.batch_size_hint = batch_size or 1024
        self.name = f"model2vec:{p.resolve()}:max{max_tokens}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(
            list(texts), max_length=self.max_tokens, normalize=False, batch_size=max(1, len(texts)),
            use_multiprocessing=False, show_progress_bar=False,
        )
        return l2_normalize(np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim))
