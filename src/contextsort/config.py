"""One typed config tree with defaults; each stage's fingerprint covers only what it reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from .dedup import DEFAULT_THRESHOLD


@dataclass
class InputConfig:
    text_field: str = "text"
    id_field: str = "id"
    label_field: str | None = "label"
    strict: bool = False  # stop at the first bad record instead of rejecting it


@dataclass
class EmbedConfig:
    embedder: str = "wordllama"
    batch_size: int | None = None  # documents per encode call and checkpoint; None: the embedder's choice
    device: str = "auto"  # auto | cpu | cuda (neural embedders; fp16 on GPU)
    dtype: str = "float32"  # embeddings file: float32 | float16


@dataclass
class KnnConfig:
    k: int = 10  # neighbours per document (the paper uses 10)
    index: str = "auto"  # auto | flat | ivf | hnsw | ivfpq
    nprobe: int | None = None


@dataclass
class DedupConfig:
    threshold: float = DEFAULT_THRESHOLD  # cosine at or above which two documents are near-duplicates
    exact: bool = True  # also remove exact duplicates by normalised-text hash


@dataclass
class OrderConfig:
    algorithm: str = "paper"


@dataclass
class OutputConfig:
    formats: list[str] = field(default_factory=lambda: ["jsonl", "parquet"])


@dataclass
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    order: OrderConfig = field(default_factory=OrderConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def fingerprint(*parts: object) -> str:
    """Stable short hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
