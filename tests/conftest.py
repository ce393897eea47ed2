"""Shared fixtures: the BBC News sample and small synthetic corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bbc_path() -> Path:
    from contextsort.sample import bbc_news_path

    return bbc_news_path()


@pytest.fixture(scope="session")
def bbc_run(tmp_path_factory, bbc_path):
    """One full default run on the BBC sample, shared by tests that only read it."""
    import contextsort

    out = tmp_path_factory.mktemp("bbc") / "run"
    return contextsort.run([bbc_path], out)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path
