"""Shared fixtures: the BBC News sample and small synthetic corpora."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Tests marked `ray` start Ray, which binds to the machine's own address even when told
# 127.0.0.1; they run only inside a loopback-only network namespace, where
# test_ray_netns.py starts them (unshare --net) with this variable set.
IN_LOOPBACK_NETNS = os.environ.get("CONTEXTSORT_LOOPBACK_NETNS") == "1"

# No background numba warm-up beside the CLI runs of the tests (subprocesses inherit this);
# test_warmup.py starts one on purpose.
os.environ["CONTEXTSORT_WARMUP"] = "0"


def pytest_collection_modifyitems(config, items):
    if IN_LOOPBACK_NETNS:
        return
    skip = pytest.mark.skip(reason="starts Ray: run inside a loopback-only network namespace by test_ray_netns.py")
    for item in items:
        if "ray" in item.keywords:
            item.add_marker(skip)


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


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray (2 CPUs, no dashboard) for a module's `ray`-marked tests, shut down after them."""
    pytest.importorskip("ray")
    from contextsort.engines.ray import RaySession

    with RaySession(num_cpus=2, quiet=True) as s:
        yield s
