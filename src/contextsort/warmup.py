"""Fill numba's on-disk cache before a person's first real run.

Every hot loop is `@njit(cache=True)`, so only the first run on a fresh install pays for
compilation (15-30 s on 2 cores; the demo itself takes about 5 s). `compile_hot_loops()`
runs the default pipeline on a tiny generated corpus, which compiles and caches exactly
the functions, with exactly the argument types, that a default run uses.
`start_background()` starts, beside a run on a cold cache, a second process that compiles
the late stages while the run compiles the early ones (docs/benchmarks.md "First run");
a marker file stops it once the source tree is warm. `python -m contextsort.warmup` does
the whole warm-up in the foreground (for example right after `pip install`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
WARMUP_DOCS = 120


def source_stamp() -> str:
    """Changes whenever a source file of the package changes (numba's cache is keyed the same way)."""
    h = hashlib.sha256()
    for p in sorted(PACKAGE_DIR.rglob("*.py")):
        st = p.stat()
        h.update(f"{p.relative_to(PACKAGE_DIR)}:{st.st_mtime_ns}:{st.st_size};".encode())
    return h.hexdigest()[:16]


def marker_path() -> Path:
    return PACKAGE_DIR / "__pycache__" / f"contextsort-warm-{source_stamp()}"


def warmup_corpus(path: Path) -> None:
    """A tiny JSONL corpus with topics, labels and one exact duplicate: every default stage has work."""
    import json
    import random

    rng = random.Random(0)
    topics = {t: [f"{t}{i}" for i in range(30)] for t in ("alpha", "beta", "gamma", "delta")}
    with open(path, "w") as fh:
        for i in range(WARMUP_DOCS):
            label = list(topics)[i % len(topics)]
            words = rng.choices(topics[label], k=40) + rng.choices(topics[list(topics)[(i + 1) % 4]], k=5)
            fh.write(json.dumps({"id": f"w{i}", "text": " ".join(words), "label": label}) + "\n")
        fh.write(json.dumps({"id": "dup", "text": " ".join(topics["alpha"]), "label": "alpha"}) + "\n")
        fh.write(json.dumps({"id": "dup2", "text": " ".join(topics["alpha"]), "label": "alpha"}) + "\n")


def compile_signal_kernels(tmp: Path) -> None:
    """Compile the hybrid signal's kNN, scales and rescoring (the longest compile of a first run)
    straight from tiny arrays of the types the neighbors stage passes: unit-norm float32 CSR
    term vectors built by the same functions, the embeddings as a `RowFile`, the dense walk
    lists as C-order int64 / float32, the default options. The run itself then compiles only
    the term counting before it. Both the exact and the pruned lexical kNN are compiled."""
    import numpy as np
    import scipy.sparse as sp

    from .atomic import save_npy
    from .config import Config
    from .rowfile import RowFile
    from .similarity import LEXICAL_MAX_DF, N_FEATURES, LexicalModel, drop_common_terms, lexical_knn, similarity_graph
    from .stages.neighbors import walk_neighbours

    cfg = Config().similarity
    k = walk_neighbours(Config())
    rng = np.random.default_rng(0)
    n, dim, terms = 64, 8, 12
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    save_npy(tmp / "embeddings.npy", emb)
    cols = np.sort(rng.choice(N_FEATURES, terms * 2, replace=False)).astype(np.int32)
    indices = np.concatenate([np.sort(rng.choice(cols, terms, replace=False)) for _ in range(n)]).astype(np.int32)
    indptr = np.arange(0, n * terms + 1, terms, dtype=np.int64)
    counts = sp.csr_matrix((np.ones(n * terms, np.float32), indices, indptr), shape=(n, N_FEATURES))
    counts.has_sorted_indices = True
    x = LexicalModel.fit(drop_common_terms(counts, LEXICAL_MAX_DF, copy=False), cfg.lexical).transform(counts, copy=False)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    ids = np.ascontiguousarray(np.argsort(-sims, axis=1, kind="stable")[:, :k], dtype=np.int64)
    top = np.ascontiguousarray(np.take_along_axis(sims, ids, axis=1), dtype=np.float32)
    lexical_knn(x, k, method="pruned")
    similarity_graph(cfg.similarity, RowFile(tmp / "embeddings.npy"), None, k, weighting=cfg.lexical,
                     weight=cfg.hybrid_weight, lexical_method=cfg.lexical_method, dense_knn=(ids, top),
                     lexical=x, overwrite_dense=True)


def compile_hot_loops(late_only: bool = False) -> float:
    """Run the default pipeline on a tiny corpus; return seconds.

    `late_only` is for a warm-up beside a first run: it compiles the hybrid signal's kernels
    first (`compile_signal_kernels`, which the run reaches after ingest, tokenize and embed),
    then the stages the run reaches last (graph, dedup, order, metrics, write) through a
    pipeline without the wordllama pooling and the lexical signal, while the run compiles
    its own first stages.
    """
    from .api import run

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="contextsort-warmup-") as tmp:
        if late_only:
            compile_signal_kernels(Path(tmp))
        corpus = Path(tmp) / "warmup.jsonl"
        warmup_corpus(corpus)
        options = {"embedder": "tfidf:16", "similarity": "dense"} if late_only else {}
        run([corpus], Path(tmp) / "run", quiet=True, **options)
    return time.perf_counter() - t


def mark_warm() -> None:
    """Record that this source tree's hot loops are compiled (so no warm-up starts again)."""
    try:
        marker_path().parent.mkdir(exist_ok=True)
        marker_path().touch()
    except OSError:
        pass  # read-only install: numba falls back to its user cache, the marker just isn't kept


def start_background() -> subprocess.Popen | None:
    """Start a warm-up process beside a first run (cache cold); the process, or None.

    A process, not a thread: numba compiles under the GIL, so only a second process compiles
    in parallel with the run. It compiles the late stages (`late_only`) while the run compiles
    its early ones; each function's cache file is written atomically, and a run that reaches
    a function before the warm-up has cached it simply compiles it too. Skipped when this
    source tree was warmed before (marker), while another warm-up holds the lock, or when
    CONTEXTSORT_WARMUP=0.
    """
    if os.environ.get("CONTEXTSORT_WARMUP", "1") == "0" or marker_path().exists():
        return None
    lock = marker_path().with_suffix(".lock")
    try:
        lock.parent.mkdir(exist_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None  # another warm-up is running
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return subprocess.Popen([sys.executable, "-m", "contextsort.warmup", "--late", "--lock", str(lock)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "CONTEXTSORT_WARMUP": "0"})


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m contextsort.warmup", description="compile and cache numba's hot loops")
    p.add_argument("--late", action="store_true", help="only the stages a run reaches last (used beside a first run)")
    p.add_argument("--lock", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    fd = None
    if a.lock:  # held while compiling, so that a second first run does not start another warm-up
        fd = os.open(a.lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0
    secs = compile_hot_loops(late_only=a.late)
    mark_warm()  # after --late too: the run beside it caches the early stages itself
    print(f"contextsort: numba cache warmed in {secs:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
