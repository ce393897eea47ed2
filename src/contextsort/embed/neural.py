"""Neural encoders on torch: any sentence-transformers model, and the paper's Contriever recipe.

Both need the optional `neural` extra (torch, transformers, sentence-transformers). Every
failure to load (package missing, model not on disk, hub unreachable) becomes an
`EmbedderUnavailable` raised from the constructor, so a run fails before doing any work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from . import EmbedderUnavailable, l2_normalize

NEURAL_HINT = "install the neural extra: pip install 'contextsort[neural]' (CPU torch: pip install torch==2.13.0)"
CONTRIEVER_DEFAULT = "facebook/contriever-msmarco"  # the paper's encoder
CPU_BATCH = 32
GPU_BATCH = 256


def import_torch():
    """torch, or a clear EmbedderUnavailable naming the extra to install."""
    try:
        import torch
    except ImportError as e:
        raise EmbedderUnavailable(f"the 'torch' package is not installed: {NEURAL_HINT}") from e
    return torch


def resolve_device(device: str | None) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without a GPU is an error."""
    torch = import_torch()
    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EmbedderUnavailable(f"--device {device} requested but torch sees no CUDA GPU (torch {torch.__version__})")
        return device
    if device == "cpu":
        return device
    raise EmbedderUnavailable(f"unknown device '{device}' (use auto, cpu or cuda)")


def _short(e: Exception) -> str:
    """First line of an exception message (hub errors run to several lines)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _load(loader, model: str, what: str):
    """Load a local path directly, or a hub name from the local cache first, then the hub.

    Trying the cache first keeps a cached model usable offline without the hub's
    retries (about 30 s before it gives up on a machine with no network).
    """
    path = Path(model).expanduser()
    # hub names are "name" or "org/name"; anything else is meant as a directory
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
    if path.exists():
        try:
            return loader(str(path), local_files_only=True)
        except Exception as e:
            raise EmbedderUnavailable(f"cannot load {what} model from {path}: {_short(e)}") from e
    if looks_like_path:
        raise EmbedderUnavailable(f"{what} model path does not exist: {path}")
    try:
        return loader(model, local_files_only=True)
    except Exception as cached_err:
        if _offline():
            raise EmbedderUnavailable(
                f"{what} model '{model}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set "
                f"(download it once online, or give a local path): {_short(cached_err)}"
            ) from cached_err
    try:
        return loader(model, local_files_only=False)
    except Exception as e:
        raise EmbedderUnavailable(
            f"cannot load {what} model '{model}': not a local path, not in the Hugging Face cache, and the download "
            f"failed (offline?). Give a local directory or download it first. ({_short(e)})"
        ) from e


class _TorchEncoder:
    """Shared device / fp16 / batch-size handling."""

    def _setup_device(self, device: str | None, fp16: bool | None, batch_size: int | None) -> None:
        self.device = resolve_device(device)
        on_gpu = self.device.startswith("cuda")
        self.fp16 = on_gpu if fp16 is None else bool(fp16 and on_gpu)
        # the runner's unit of work: documents per encode() call and per checkpoint
        self.batch_size_hint = batch_size or (GPU_BATCH if on_gpu else CPU_BATCH)


class SentenceTransformerEmbedder(_TorchEncoder):
    """Any sentence-transformers model (local directory or hub name), with its own pooling."""

    def __init__(self, model: str | None = None, device: str | None = "auto", fp16: bool | None = None,
                 batch_size: int | None = None, **_):
        if not model:
            raise EmbedderUnavailable("sentence-transformers needs a model: --embedder sentence-transformers:PATH_OR_NAME")
        import_torch()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise EmbedderUnavailable(f"the 'sentence-transformers' package is not installed: {NEURAL_HINT}") from e
        self._setup_device(device, fp16, batch_size)
        self._model = _load(lambda m, **kw: SentenceTransformer(m, device=self.device, **kw), model, "sentence-transformers")
        if self.fp16:
            self._model.half()
        self._model.eval()
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.max_tokens = int(self._model.max_seq_length)
        self.name = f"sentence-transformers:{model}:max{self.max_tokens}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = self._model.encode(
            list(texts), batch_size=max(1, len(texts)), convert_to_numpy=True, normalize_embeddings=False,
            show_progress_bar=False,
        )
        return l2_normalize(np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim))


class ContrieverEmbedder(_TorchEncoder):
    """The paper's recipe: transformers AutoModel, mean of the last hidden states over the
    first `max_tokens` (512) tokens, padding masked out; then L2-normalised (cosine)."""

    def __init__(self, model: str | None = None, device: str | None = "auto", fp16: bool | None = None,
                 batch_size: int | None = None, max_tokens: int = 512, **_):
        model = model or CONTRIEVER_DEFAULT
        self._torch = import_torch()
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:
            raise EmbedderUnavailable(f"the 'transformers' package is not installed: {NEURAL_HINT}") from e
        self._setup_device(device, fp16, batch_size)
        self._tok = _load(AutoTokenizer.from_pretrained, model, "contriever (tokenizer)")
        net = _load(AutoModel.from_pretrained, model, "contriever")
        net.to(self.device)
        if self.fp16:
            net.half()
        net.eval()
        self._net = net
        limit = getattr(net.config, "max_position_embeddings", None)
        self.max_tokens = int(min(max_tokens, limit) if limit else max_tokens)
        self.dim = int(net.config.hidden_size)
        self.name = f"contriever:{model}:max{self.max_tokens}"

    def encode_raw(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled vectors before normalisation (float32 [n, dim])."""
        torch = self._torch
        batch = self._tok(list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = self._net(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            # sum in float32 so fp16 on GPU does not overflow on long documents
            summed = (hidden.float() * mask.float()).sum(dim=1)
            pooled = summed / mask.float().sum(dim=1).clamp(min=1.0)
        return pooled.cpu().numpy().astype(np.float32, copy=False)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(self.encode_raw(texts))
