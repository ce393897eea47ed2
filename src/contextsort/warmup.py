"""Fill numba's on-disk cache before a person's first real run.

Every hot loop is `@njit(cache=True)`, so only the first run on a fresh install pays for
compilation (about 30 s of CPU; the demo itself takes about 5 s). `compile_hot_loops()`
runs the default pipeline on a tiny generated corpus, which compiles and caches exactly
the functions, with exactly the argument types, that a default run uses.
`start_background()` starts, beside a run on a cold cache, a second process that compiles
what the run reaches last (the graph, order and metrics, straight from tiny arrays of the
stages' types; with 4 or more cores the hybrid signal's kernels too, in a third process) while
the run compiles its first stages (docs/benchmarks.md "First run"); a
marker file stops it once the source tree is warm. `python -m contextsort.warmup` does the
whole warm-up in the foreground (for example right after `pip install`)."""

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


def tiny_run_arrays(tmp: Path):
    """(embeddings as a `RowFile` of tmp/embeddings.npy, walk lists ids int64 / sims float32
    [n, walk_k] in C order, as the stages hold them): unit vectors and their exact kNN."""
    import numpy as np

    from .atomic import save_npy
    from .config import Config
    from .rowfile import RowFile
    from .stages.neighbors import walk_neighbours

    rng = np.random.default_rng(0)
    n, dim, k = 64, 8, walk_neighbours(Config())
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    save_npy(tmp / "embeddings.npy", emb)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    ids = np.ascontiguousarray(np.argsort(-sims, axis=1, kind="stable")[:, :k], dtype=np.int64)
    top = np.ascontiguousarray(np.take_along_axis(sims, ids, axis=1), dtype=np.float32)
    return RowFile(tmp / "embeddings.npy"), ids, top


def compile_signal_kernels(tmp: Path) -> None:
    """Compile the hybrid signal's kNN, scales and rescoring (the longest compile of a first run)
    straight from tiny arrays of the types the neighbors stage passes: unit-norm float32 CSR
    term vectors built by the same functions, the embeddings as a `RowFile`, the dense walk
    lists as C-order int64 / float32, the default options. The run itself then compiles only
    the term counting before it. Both the exact and the pruned lexical kNN are compiled."""
    import numpy as np
    import scipy.sparse as sp

    from .config import Config
    from .similarity import LEXICAL_MAX_DF, N_FEATURES, LexicalModel, drop_common_terms, lexical_knn, similarity_graph

    cfg = Config().similarity
    rows, ids, top = tiny_run_arrays(tmp)
    n, k, terms = ids.shape[0], ids.shape[1], 12
    rng = np.random.default_rng(1)
    cols = np.sort(rng.choice(N_FEATURES, terms * 2, replace=False)).astype(np.int32)
    indices = np.concatenate([np.sort(rng.choice(cols, terms, replace=False)) for _ in range(n)]).astype(np.int32)
    indptr = np.arange(0, n * terms + 1, terms, dtype=np.int64)
    counts = sp.csr_matrix((np.ones(n * terms, np.float32), indices, indptr), shape=(n, N_FEATURES))
    counts.has_sorted_indices = True
    x = LexicalModel.fit(drop_common_terms(counts, LEXICAL_MAX_DF, copy=False), cfg.lexical).transform(counts, copy=False)
    lexical_knn(x, k, method="pruned")
    similarity_graph(cfg.similarity, rows, None, k, weighting=cfg.lexical, weight=cfg.hybrid_weight,
                     lexical_method=cfg.lexical_method, dense_knn=(ids, top), lexical=x, overwrite_dense=True)


def compile_order_and_metrics(tmp: Path) -> None:
    """Compile the graph, the default order and the metrics (the run's last stages) from tiny
    arrays of the types those stages pass: the kNN lists saved and mapped read-only, restricted
    to the kept documents, the order as int64, the embeddings as a `RowFile`."""
    import numpy as np

    from .atomic import save_npy
    from .config import Config
    from .graph import graph_from_knn, restrict_knn
    from .metrics import adjacent_similarities_along, path_bound, path_bound_two_best, path_weight
    from .order import compute_order

    oc = Config().order
    rows, ids, top = tiny_run_arrays(tmp)
    save_npy(tmp / "knn_ids.npy", ids)
    save_npy(tmp / "knn_sims.npy", top)
    dup_of = np.full(len(ids), -1, dtype=np.int64)
    k_ids, k_sims = restrict_knn(np.load(tmp / "knn_ids.npy", mmap_mode="r"), np.load(tmp / "knn_sims.npy", mmap_mode="r"),
                                 dup_of, dup_of < 0)
    graph = graph_from_knn(k_ids, k_sims)
    order = compute_order(oc.algorithm, graph, seed=0, knn_ids=k_ids, emb=None, clusters=oc.clusters,
                          neighbors=oc.knn_neighbors).astype(np.int64)
    adjacent_similarities_along(rows, order)
    pw = path_weight(graph, order)
    path_bound(graph, target=pw["sum"])
    path_bound_two_best(graph)


PARTS = {"signal": compile_signal_kernels, "order": compile_order_and_metrics}


def compile_hot_loops(late_only: bool = False) -> float:
    """Run the default pipeline on a tiny corpus; return seconds.

    `late_only` is for a warm-up beside a first run: it first compiles the graph, order and
    metrics (the stages the run reaches last) straight from tiny arrays, then
    the rest of the late stages (dedup, write) through a pipeline without the wordllama pooling
    and the lexical signal. On 2 cores the run compiles the signal's kernels itself meanwhile:
    a warm-up that did them first reached the order after the run did, and both compiled it
    (docs/benchmarks.md "First run").
    """
    from .api import run

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="contextsort-warmup-") as tmp:
        if late_only:
            compile_order_and_metrics(Path(tmp))
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
    p.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)  # one group only, in a second process
    a = p.parse_args(argv)
    fd = None
    if a.lock:  # held while compiling, so that a second first run does not start another warm-up
        fd = os.open(a.lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0
    if a.part:  # one group, in the second process of a split warm-up (the first marks the tree warm)
        with tempfile.TemporaryDirectory(prefix="contextsort-warmup-") as tmp:
            PARTS[a.part](Path(tmp))
        return 0
    helper = None
    if a.late and (os.cpu_count() or 1) >= 4:  # cores for the run and two warm-ups: the signal's kernels in a second one
        helper = subprocess.Popen([sys.executable, "-m", "contextsort.warmup", "--part", "signal"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    secs = compile_hot_loops(late_only=a.late)
    if helper is not None:
        helper.wait()
    mark_warm()  # after --late too: the run beside it caches the early stages itself
    print(f"contextsort: numba cache warmed in {secs:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
