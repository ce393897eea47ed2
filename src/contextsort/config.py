"""One typed config tree. Every option is declared once, here, with its command-line flag,
help, default and constraint; the CLI is generated from these declarations, `validate()`
checks every value before any work (CLI and Python API alike), and errors name the
option as the user wrote it (`--k must be an integer >= 1, got 0`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Callable, Iterator

from .errors import ConfigError

# --------------------------------------------------------------------------------------
# Constraints (in the spirit of scikit-learn's parameter constraints: declared, not coded)
# --------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Interval:
    """A number of type `kind` in [lo, hi] (`closed`: both, left, right, neither; None: unbounded)."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    closed: str = "both"
    note: str = ""  # appended to the description, e.g. "or > 1 to disable"

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        left = ">=" if self.closed in ("both", "left") else ">"
        right = "<=" if self.closed in ("both", "right") else "<"
        if self.lo is not None and self.hi is not None:
            lb = "[" if left == ">=" else "("
            rb = "]" if right == "<=" else ")"
            out = f"{what} in {lb}{_num(self.lo)}, {_num(self.hi)}{rb}"
        elif self.lo is not None:
            out = f"{what} {left} {_num(self.lo)}"
        elif self.hi is not None:
            out = f"{what} {right} {_num(self.hi)}"
        else:
            out = what
        return out + (f" {self.note}" if self.note else "")

    def ok(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.kind is int and not isinstance(v, int):
            return False
        if not math.isfinite(v):
            return False
        lo_ok = self.lo is None or (v >= self.lo if self.closed in ("both", "left") else v > self.lo)
        hi_ok = self.hi is None or (v <= self.hi if self.closed in ("both", "right") else v < self.hi)
        return lo_ok and hi_ok


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of names; `values` may be a callable (a registry read lazily)."""

    values: tuple | Callable[[], Any]

    def names(self) -> list[str]:
        v = self.values() if callable(self.values) else self.values
        return sorted(v)

    def describe(self) -> str:
        return "one of " + ", ".join(self.names())

    def ok(self, v: Any) -> bool:
        return isinstance(v, str) and v in self.names()


@dataclass(frozen=True)
class ListOf:
    """A non-empty list of names, each one of `item`'s (written on the command line comma-separated)."""

    item: OneOf

    def describe(self) -> str:
        return "a non-empty comma-separated list of " + ", ".join(self.item.names())

    def ok(self, v: Any) -> bool:
        return isinstance(v, list) and len(v) > 0 and all(self.item.ok(x) for x in v) and len(set(v)) == len(v)


@dataclass(frozen=True)
class Text:
    """A non-empty string (field names, specs, addresses)."""

    def describe(self) -> str:
        return "a non-empty string"

    def ok(self, v: Any) -> bool:
        return isinstance(v, str) and v.strip() != ""


@dataclass(frozen=True)
class Flag:
    def describe(self) -> str:
        return "true or false"

    def ok(self, v: Any) -> bool:
        return isinstance(v, bool)


@dataclass(frozen=True)
class Size:
    """A size such as 512MB, 1GB or a number of bytes."""

    def describe(self) -> str:
        return "a size such as 512MB, 1GB or a number of bytes >= 1"

    def ok(self, v: Any) -> bool:
        try:
            return parse_size(v) is not None and parse_size(v) >= 1
        except ValueError:
            return False


def parse_size(s: str | int | None) -> int | None:
    """'1GB' / '500MB' / '4096' -> bytes (None stays None); ValueError on anything else."""
    if s is None:
        return None
    if isinstance(s, bool):
        raise ValueError(f"not a size: {s!r}")
    if isinstance(s, int):
        return s
    t = str(s).strip().upper().replace(" ", "")
    units = {"TB": 1 << 40, "GB": 1 << 30, "MB": 1 << 20, "KB": 1 << 10, "T": 1 << 40, "G": 1 << 30, "M": 1 << 20, "K": 1 << 10, "B": 1}
    for u, mult in units.items():
        if t.endswith(u):
            num = t[: -len(u)]
            break
    else:
        num, mult = t, 1
    try:
        val = float(num)
    except ValueError:
        raise ValueError(f"not a size: {s!r} (use e.g. 512MB, 1GB)") from None
    if not math.isfinite(val) or val <= 0:
        raise ValueError(f"not a size: {s!r} (must be > 0)")
    return int(val * mult)


def opt(default: Any, flag: str, help: str, check: Any = None, *, none: bool = False, negate: bool = False,
        fingerprint: bool = True, factory: Callable[[], Any] | None = None):
    """Declare an option: its default, command-line flag, help, constraint.

    none: None is a valid value (meaning "automatic" or "off", said in the help).
    negate: a boolean whose flag turns it off (--no-shuffle sets shuffle = False).
    fingerprint: False for options that cannot change any output (device, workers).
    """
    meta = {"flag": flag, "help": help, "check": check, "none": none, "negate": negate, "fingerprint": fingerprint}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def api_name(flag: str) -> str:
    """The Python keyword of an option: its long flag without dashes (--dedup-threshold -> dedup_threshold)."""
    return flag.lstrip("-").replace("-", "_").removeprefix("no_")


# Registries read lazily so that importing config stays cheap.
def _orders():
    from .order import ORDERS

    return ORDERS


def _output_formats():
    return ("jsonl", "parquet")


def _context_formats():
    from .formats.contexts import CONTEXT_FORMATS

    return CONTEXT_FORMATS


MAX_CONTEXT_LENGTH = 1 << 22  # 4M tokens per context: far above any training setup, far below memory trouble

# --------------------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------------------


@dataclass
class InputConfig:
    text_field: str = opt("text", "--text-field", "field holding the document text", Text())
    id_field: str = opt("id", "--id-field", "field holding the document id; a record without one gets its position", Text())
    label_field: str | None = opt("label", "--label-field", "optional field with a label, used for label_agreement ('' for none)", Text(), none=True)
    strict: bool = opt(False, "--strict", "stop at the first bad record (exit 2) instead of rejecting it", Flag())


@dataclass
class EmbedConfig:
    embedder: str = opt("wordllama", "--embedder", "embedder: wordllama, tfidf[:DIM], sentence-transformers:MODEL, contriever[:MODEL], model2vec:PATH", Text())
    batch_size: int | None = opt(None, "--batch-size", "documents per embedding batch (default: the embedder's: 512 wordllama, 32 neural on CPU, 256 on GPU)",
                                 Interval(int, 1), none=True, fingerprint=False)
    device: str = opt("auto", "--device", "where neural embedders run; fp16 on GPU", OneOf(("auto", "cpu", "cuda")), fingerprint=False)
    dtype: str = opt("float32", "--embed-dtype", "dtype of the embeddings file in the run directory", OneOf(("float32", "float16")))


@dataclass
class KnnConfig:
    k: int = opt(10, "--k", "neighbours per document searched for dedup and the graph (the paper: 10)", Interval(int, 1, 1024))
    index: str = opt("auto", "--index", "kNN index (auto: exact up to 20k documents, IVF-Flat up to 50k, ivffs above; ivffs: IVF + 4-bit PQ fast scan, re-ranked exactly; ivf: IVF-Flat, the default above 50k before; ivfgemm: IVF search batched into BLAS GEMMs)",
                     OneOf(("auto", "flat", "ivf", "ivffs", "hnsw", "ivfpq", "ivfgemm")))
    nprobe: int | None = opt(None, "--nprobe", "IVF lists probed per query (default: chosen from N)", Interval(int, 1), none=True)
    walk_k: int | None = opt(16, "--walk-k", "neighbours per document in the traversal graph, searched beyond --k when larger (dedup keeps the first --k; none: = --k, the paper's graph)",
                             Interval(int, 1, 1024), none=True)


@dataclass
class SimilarityConfig:
    """Which signal builds the traversal graph (dedup always uses the dense cosine kNN)."""

    similarity: str = opt("hybrid", "--similarity", "signal of the traversal graph: embedding cosine, TF-IDF/BM25 cosine, or both (dedup always uses the dense cosine)",
                          OneOf(("dense", "lexical", "hybrid")))
    hybrid_weight: float = opt(0.1, "--hybrid-weight", "dense share of the hybrid score (0 = lexical only, 1 = dense only)", Interval(float, 0, 1))
    lexical: str = opt("tfidf", "--lexical", "lexical term weighting", OneOf(("tfidf", "bm25")))
    lexical_method: str = opt("auto", "--lexical-method", "lexical kNN: exact blocked products, or pruned candidates + exact rescoring (auto: exact up to 10k documents)",
                              OneOf(("auto", "exact", "pruned")))


@dataclass
class DedupConfig:
    threshold: float | None = opt(None, "--dedup-threshold", "cosine at or above which documents are near-duplicates; > 1 disables (default: the embedder's calibrated threshold, 0.97 for wordllama)",
                                  Interval(float, 0, None, closed="neither", note="(> 1 disables dedup)"), none=True)
    exact: bool = opt(True, "--no-exact-dedup", "do not remove exact (normalised-text) duplicates", Flag(), negate=True)


@dataclass
class OrderConfig:
    algorithm: str = opt("improved", "--order", "ordering: improved (the best measured, docs/quality.md), paper (reproduces the paper's Algorithm 1 exactly), edge, release, random, cluster, knn",
                         OneOf(_orders))
    clusters: int | None = opt(None, "--clusters", "--order cluster: number of k-means clusters (default: sqrt(N))", Interval(int, 1), none=True)
    knn_neighbors: int | None = opt(None, "--knn-neighbors", "--order knn: retrieved neighbours written after each document (default: all k)", Interval(int, 1), none=True)


@dataclass
class OutputConfig:
    formats: list[str] = opt(None, "--format", "output formats of the ordered corpus", ListOf(OneOf(_output_formats)),
                             factory=lambda: ["jsonl", "parquet"])
    report: bool = opt(True, "--no-report", "do not write RUN_DIR/report.html at the end", Flag(), negate=True,
                       fingerprint=False)
    cache_dir: str | None = opt(None, "--cache-dir", "working copy of a run directory given as a URL (s3://, gs://...), uploaded stage by stage (default: $XDG_CACHE_HOME/contextsort/runs/HASH)",
                                Text(), none=True, fingerprint=False)


@dataclass
class PackConfig:
    """Training-ready contexts (the `tokenize` and `pack` stages); off while context_length is None."""

    context_length: int | None = opt(None, "--context-length", "tokens per context (the paper: 8192); packing is off without it",
                                     Interval(int, 2, MAX_CONTEXT_LENGTH), none=True)
    tokenizer: str = opt("llama2", "--tokenizer", "llama2 (offline) | path to tokenizer.json | tiktoken:NAME | hf:NAME", Text())
    mode: str = opt("concat", "--pack-mode", "concat: cut every L tokens (the paper); boundary: cut between documents at weak links", OneOf(("concat", "boundary")))
    formats: list[str] = opt(None, "--pack-format", "formats of the packed contexts", ListOf(OneOf(_context_formats)), factory=lambda: ["megatron", "parquet"])
    bos: bool = opt(False, "--bos", "put BOS before each document (EOS follows each always)", Flag())
    drop_last: bool = opt(False, "--drop-last", "drop the last context if it is not full", Flag())
    shuffle: bool = opt(True, "--no-shuffle", "keep contexts in stream order (training needs them shuffled)", Flag(), negate=True)
    seed: int | None = opt(None, "--pack-seed", "seed of the context shuffle (default: --seed)", Interval(int, 0), none=True)
    shard_size: str | None = opt(None, "--shard-size", "max token bytes per shard file, e.g. 1GB (default: one shard)", Size(), none=True)
    pad_id: int | None = opt(None, "--pad-id", "padding token id (default: the tokenizer's pad, else EOS)", Interval(int, 0), none=True)
    pad_weight: float = opt(4.0, "--pad-weight", "boundary mode: cost of padding, per L tokens", Interval(float, 0))
    split_cost: float = opt(1.0, "--split-cost", "boundary mode: cost of splitting a document", Interval(float, 0))
    min_split: int | None = opt(None, "--min-split", "boundary mode: never split documents shorter than this (default: L/4)", Interval(int, 1), none=True)


@dataclass
class EngineConfig:
    """Where the stages run: "local" (this process) or "ray" (tasks on a Ray cluster)."""

    name: str = opt("local", "--engine", "local: this process; ray: ingest, tokenize, embedding, partitions, writing and packing as Ray tasks", OneOf(("local", "ray")), fingerprint=False)
    ray_address: str | None = opt(None, "--ray-address", "Ray cluster to join: 'auto' or HOST:PORT (default: start a local Ray)", Text(), none=True, fingerprint=False)
    workers: int | None = opt(None, "--workers", "CPUs / tasks to use with --engine ray (default: all the cluster has)", Interval(int, 1), none=True, fingerprint=False)
    partitions: int = opt(0, "--partitions", "k-means partitions for kNN, dedup and the walk (0: 1 with --engine local, max(workers, N/1M) with ray)", Interval(int, 0))
    spill: int = opt(1, "--spill", "neighbouring partitions each partition also searches, for border documents", Interval(int, 0))


SECTIONS = ("input", "embed", "knn", "similarity", "dedup", "order", "output", "pack", "engine")


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
    seed: int = opt(0, "--seed", "seed of every random choice (same input + options + seed = same output)", Interval(int, 0))

    # -- options ---------------------------------------------------------------------
    @staticmethod
    def options() -> Iterator[tuple[str | None, Any]]:
        """(section name or None for top level, dataclass field) of every option, in declaration order."""
        for f in fields(Config):
            if f.name in SECTIONS:
                for g in fields(f.type if isinstance(f.type, type) else globals()[f.type]):
                    yield f.name, g
            else:
                yield None, f

    def get(self, section: str | None, name: str) -> Any:
        return getattr(getattr(self, section) if section else self, name)

    def set(self, section: str | None, name: str, value: Any) -> None:
        setattr(getattr(self, section) if section else self, name, value)

    def validate(self) -> "Config":
        """Check every value; raise ConfigError naming the option (its flag) and the value."""
        for section, f in self.options():
            v = self.get(section, f.name)
            meta = f.metadata
            if v is None and meta["none"]:
                continue
            check = meta["check"]
            if check is not None and not check.ok(v):
                raise ConfigError(f"{meta['flag']} must be {check.describe()}, got {_show(v)}")
        from .order import is_permutation_order

        if not is_permutation_order(self.order.algorithm) and (self.engine.name == "ray" or self.engine.partitions > 1):
            raise ConfigError(f"--order {self.order.algorithm} repeats documents and cannot run partitioned "
                              "(--engine ray or --partitions > 1): choose an order that visits every document once")
        if self.pack.min_split is not None and self.pack.context_length and self.pack.min_split > self.pack.context_length:
            raise ConfigError(f"--min-split must be <= --context-length ({self.pack.context_length}), got {self.pack.min_split}")
        return self

    def with_options(self, **options: Any) -> "Config":
        """A copy with options set by their Python names (text_field="content", k=20, order="paper")."""
        c = Config.from_dict(self.to_dict())
        by_name = {api_name(f.metadata["flag"]): (s, f) for s, f in self.options()}
        for key, value in options.items():
            if key not in by_name:
                raise ConfigError(f"unknown option {key!r}" + _did_you_mean(key, by_name))
            s, f = by_name[key]
            c.set(s, f.name, value)
        return c

    def to_dict(self) -> dict:
        return asdict(self)

    def differences(self) -> dict:
        """Options whose value is not the default, by flag (for the report and the log)."""
        d = Config()
        return {f.metadata["flag"]: self.get(s, f.name) for s, f in self.options() if self.get(s, f.name) != d.get(s, f.name)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Config":
        """Inverse of to_dict; unknown keys are an error (a misspelt option must not be ignored)."""
        c = cls()
        for name, value in (d or {}).items():
            if name in SECTIONS:
                if not isinstance(value, dict):
                    raise ConfigError(f"config section {name!r} must be a mapping, got {_show(value)}")
                sec = getattr(c, name)
                known = {f.name for f in fields(sec)}
                for k, v in value.items():
                    if k not in known:
                        raise ConfigError(f"unknown config key {name}.{k}" + _did_you_mean(k, known))
                    setattr(sec, k, list(v) if isinstance(v, tuple) else v)
            elif name == "seed":
                c.seed = value
            else:
                raise ConfigError(f"unknown config key {name!r}" + _did_you_mean(name, set(SECTIONS) | {"seed"}))
        return c

    def section_values(self, names: tuple[str, ...]) -> dict:
        """The values of these sections (or "seed") that can change an output: a stage's fingerprint material."""
        out = {}
        for name in names:
            if name == "seed":
                out["seed"] = self.seed
                continue
            sec = getattr(self, name)
            out[name] = {f.name: getattr(sec, f.name) for f in fields(sec) if f.metadata.get("fingerprint", True)}
        return out


def _show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _did_you_mean(key: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def fingerprint(*parts: object) -> str:
    """Stable short hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def field_default(section: str | None, name: str) -> Any:
    """Default value of one option (used by the CLI for %(default)s)."""
    for s, f in Config.options():
        if s == section and f.name == name:
            return f.default_factory() if f.default is MISSING else f.default
    raise KeyError((section, name))
