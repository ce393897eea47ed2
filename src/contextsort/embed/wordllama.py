"""WordLlama: static 256-d token embeddings from Llama-2's vocabulary, shipped in the wheel.

No download, no torch, about 1,600 docs/s on 2 cores. Semantic (not just lexical)
because the token vectors were distilled from a large LLM's embedding table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numba as nb
import numpy as np

from ..threads import over_row_ranges
from . import EmbedderUnavailable, l2_normalize

TOKENIZER = "llama2"  # the token store (contextsort.tokenizer spec) whose ids encode_ids accepts


@nb.njit(nogil=True, cache=True)
def mean_pool_rows(r0, r1, table, tokens, start, length, out, bad):
    """out[i] = mean of table[tokens[start[i] : start[i] + length[i]]] (zeros when empty), rows r0..r1-1.

    float32, tokens summed in order: the same arithmetic as wordllama's padded-batch mean
    (padding contributes exact zeros), so vectors equal `encode` bit for bit. Ids outside
    the table are skipped and counted in bad[i].
    """
    dim = table.shape[1]
    vocab = table.shape[0]
    acc = np.zeros(dim, np.float32)
    for i in range(r0, r1):
        for d in range(dim):
            acc[d] = 0.0
        a = start[i]
        for t in range(a, a + length[i]):
            tid = np.int64(tokens[t])
            if tid < 0 or tid >= vocab:
                bad[i] += 1
                continue
            row = table[tid]
            for d in range(dim):
                acc[d] += row[d]
        cnt = np.float32(max(length[i], 1))
        for d in range(dim):
            out[i, d] = acc[d] / cnt


def mean_pool(table, tokens, start, length, out, bad) -> None:
    """`mean_pool_rows` over every row, on numba's thread count (`threads.over_row_ranges`)."""
    over_row_ranges(mean_pool_rows, len(start), table, tokens, start, length, out, bad)


def _import_wordllama():
    """Import wordllama without letting it switch the root logger to INFO (it calls basicConfig)."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import wordllama
    from wordllama import WordLlama

    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    return wordllama, WordLlama


def shipped_table(config: str, dim: int) -> np.ndarray | None:
    """The token embedding table in the wordllama wheel, read with safetensors alone (as
    wordllama reads it: float32, key "embedding.weight"), or None if the wheel lacks it.
    Pooling from token ids needs only this table; importing wordllama and loading its
    model (requests, a second tokenizer) cost about a second of every run."""
    import importlib.util

    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / f"{config}_{dim}.safetensors"
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="np", device="cpu") as f:
        return np.ascontiguousarray(f.get_tensor("embedding.weight").astype(np.float32))


class WordLlamaEmbedder:
    name = "wordllama"

    def __init__(self, config: str | None = None, dim: int = 256, batch_size: int = 64, max_tokens: int = 512, **_):
        self.config = config or "l2_supercat"
        self.dim = dim
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.name = f"wordllama:{self.config}:{dim}:max{max_tokens}"
        self._model = None
        try:
            self._table = shipped_table(self.config, dim)
        except Exception as e:
            raise EmbedderUnavailable(f"cannot read the WordLlama weights shipped with wordllama: {e}") from e
        if self._table is None:  # not in the wheel: wordllama's own lookup (its cache directory)
            self._table = self.model.embedding

    @property
    def model(self):
        """wordllama's model, loaded on first use: only `encode` (from texts) needs it."""
        if self._model is None:
            try:
                wordllama, WordLlama = _import_wordllama()
            except ImportError as e:  # pragma: no cover - it is a core dependency
                raise EmbedderUnavailable("the 'wordllama' package is not installed: pip install wordllama") from e
            try:
                # Plain load() tries to download a tokenizer config it already ships.
                model = WordLlama.load(config=self.config, dim=self.dim, cache_dir=Path(wordllama.__file__).parent,
                                       disable_download=True)
            except Exception as e:
                raise EmbedderUnavailable(f"cannot load WordLlama weights offline: {e}") from e
            # The paper embeds the first 512 tokens; without truncation wordllama pads every
            # batch to its longest document, which is several times slower on long texts.
            if self.max_tokens:
                model.tokenizer.enable_truncation(self.max_tokens)
            self._model = model
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.max_tokens:
            # Only the first max_tokens tokens count; cutting the string first keeps a
            # 50 MB document from being tokenised whole (no token is 32 characters long).
            texts = [t[: 32 * self.max_tokens] for t in texts]
        vecs = self.model.embed(list(texts), norm=False, batch_size=self.batch_size)
        return l2_normalize(np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim))

    def encode_ids(self, tokens: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
        """Vectors from llama2 token ids already in a token store, equal to `encode` of the texts.

        Document i is ``tokens[start[i] : start[i] + length[i]]`` without special tokens
        (`contextsort.tokens.content_spans` of the tokenize stage); only its first
        `max_tokens` ids count, as in `encode`. No text is read and nothing is tokenized.
        (`encode` cuts the text at 32 * max_tokens characters first: the two differ only
        where the first max_tokens tokens span more characters than that.)
        """
        start = np.ascontiguousarray(start, dtype=np.int64)
        length = np.asarray(length, dtype=np.int64)
        if self.max_tokens:
            length = np.minimum(length, self.max_tokens)
        length = np.ascontiguousarray(length)
        out = np.empty((len(start), self.dim), dtype=np.float32)
        bad = np.zeros(len(start), dtype=np.int64)
        mean_pool(self._table, tokens, start, length, out, bad)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"document {i}: {int(bad[i])} token ids outside the wordllama vocabulary "
                             f"({self._table.shape[0]}): ids from another tokenizer than {TOKENIZER}?")
        return l2_normalize(out)
