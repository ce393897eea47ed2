"""Fill numba's on-disk cache before a person's first real run.

Every hot loop is `@njit(cache=True)`, so only the first run on a fresh install pays for
compilation (15-30 s on 2 cores; the demo itself takes about 5 s). `compile_hot_loops()`
runs the default pipeline on a tiny generated corpus, which compiles and caches exactly
the functions, with exactly the argument types, that a default run uses.
`start_background()` does that in a daemon thread, once per installed source tree (a
marker file records it), meant to overlap the first run's ingest and embed stages; on 2
cores it made the first demo slower, not faster (docs/benchmarks.md "First run"), so do
not call it by default. `python -m contextsort.warmup` does it in the foreground (for
example right after `pip install`).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import threading
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


def compile_hot_loops() -> float:
    """Run the default pipeline (with the model-free tfidf embedder) on a tiny corpus; return seconds."""
    from .config import Config
    from .runner import Runner

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="contextsort-warmup-") as tmp:
        corpus = Path(tmp) / "warmup.jsonl"
        warmup_corpus(corpus)
        cfg = Config()
        cfg.embed.embedder = "tfidf:16"
        Runner([corpus], Path(tmp) / "run", cfg, quiet=True).run()
    try:
        marker_path().parent.mkdir(exist_ok=True)
        marker_path().touch()
    except OSError:
        pass  # read-only install: numba falls back to its user cache, the marker just isn't kept
    return time.perf_counter() - t


def start_background() -> threading.Thread | None:
    """Compile in a daemon thread unless this source tree was warmed before; the thread, or None."""
    if marker_path().exists():
        return None

    def work() -> None:
        try:
            compile_hot_loops()
        except Exception:  # a failed warm-up only means the real run compiles for itself
            pass

    thread = threading.Thread(target=work, name="contextsort-warmup", daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    secs = compile_hot_loops()
    print(f"contextsort: numba cache warmed in {secs:.1f}s", file=sys.stderr)
