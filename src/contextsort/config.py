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
    walk_k: int | None = None  # neighbours per document in the traversal graph (None: k; dedup keeps k); docs/quality.md
    index: str = "auto"  # auto | flat | ivf | hnsw | ivfpq
    nprobe: int | None = None


@dataclass
class SimilarityConfig:
    """Which signal builds the traversal graph (dedup always uses the dense cosine kNN)."""

    similarity: str = "hybrid"  # dense | lexical | hybrid (see README "Similarity signals")
    hybrid_weight: float = 0.2  # dense share of the hybrid score (0 = lexical only, 1 = dense only); measured best on BBC + Jargon
    lexical: str = "tfidf"  # tfidf | bm25 term weighting
    lexical_method: str = "auto"  # auto | exact | pruned (lexical kNN search)


@dataclass
class DedupConfig:
    threshold: float = DEFAULT_THRESHOLD  # cosine at or above which two documents are near-duplicates
    exact: bool = True  # also remove exact duplicates by normalised-text hash


@dataclass
class OrderConfig:
    algorithm: str = "improved"  # the best measured (docs/quality.md); "paper" reproduces the paper exactly
    clusters: int | None = None  # --order cluster: number of k-means clusters (default sqrt(N))
    knn_neighbors: int | None = None  # --order knn: neighbours after each document (default: all k)


@dataclass
class OutputConfig:
    formats: list[str] = field(default_factory=lambda: ["jsonl", "parquet"])


@dataclass
class PackConfig:
    """Training-ready contexts (the `tokenize` and `pack` stages); off while context_length is None."""

    context_length: int | None = None  # tokens per context (the paper: 8192)
    tokenizer: str = "llama2"  # llama2 | path to tokenizer.json | tiktoken:NAME | hf:NAME
    mode: str = "concat"  # concat (the paper) | boundary
    formats: list[str] = field(default_factory=lambda: ["megatron", "parquet"])
    bos: bool = False  # BOS before each document (EOS after each is always there)
    drop_last: bool = False  # drop the last context when it is not full
    shuffle: bool = True  # permute the contexts
    seed: int | None = None  # of the context shuffle; default: Config.seed
    shard_size: str | None = None  # e.g. "1GB": tokens per shard file; None: one shard
    pad_id: int | None = None  # default: the tokenizer's pad token, else EOS
    pad_weight: float = 4.0  # boundary mode: cost of a context's padding, per L tokens
    split_cost: float = 1.0  # boundary mode: cost of splitting a document (a link costs its similarity)
    min_split: int | None = None  # boundary mode: shorter documents are never split (default L // 4)


@dataclass
class EngineConfig:
    """Where the stages run: "local" (this process) or "ray" (partitioned, see distributed/)."""

    name: str = "local"  # local | ray
    ray_address: str | None = None  # None: start a local Ray; "auto" or HOST:PORT: join that cluster
    workers: int | None = None  # CPUs / embedding actors to use (None: all the cluster has)
    partitions: int = 0  # k-means partitions (0: max(workers, N / 1M))
    spill: int = 1  # neighbouring partitions each partition also searches (border documents)


@dataclass
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    order: OrderConfig = field(default_factory=OrderConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    pack: PackConfig = field(default_factory=PackConfig)
    similarity: SimilarityConfig = field(default_factory=SimilarityConfig)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Inverse of to_dict (unknown keys are ignored, missing ones keep their defaults)."""
        c = cls()
        for name, value in (d or {}).items():
            cur = getattr(c, name, None)
            if cur is None and name != "seed":
                continue
            if isinstance(value, dict) and hasattr(cur, "__dataclass_fields__"):
                for k, v in value.items():
                    if k in cur.__dataclass_fields__:
                        setattr(cur, k, v)
            elif name in cls.__dataclass_fields__:
                setattr(c, name, value)
        return c


def fingerprint(*parts: object) -> str:
    """Stable short hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
