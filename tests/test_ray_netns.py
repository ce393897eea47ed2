"""Runs the tests marked `ray` inside a loopback-only network namespace.

Ray binds to the machine's own address even when asked for 127.0.0.1, so every test that
starts Ray runs in `unshare --net` with only `lo` up (and RAY_AUTH_MODE=disabled): no
address Ray uses can then be anything but loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IN_LOOPBACK_NETNS

ROOT = Path(__file__).resolve().parents[1]


def test_ray_tests_in_a_loopback_only_namespace():
    if IN_LOOPBACK_NETNS:
        pytest.skip("already inside the namespace")
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare to make a network namespace")
    pytest.importorskip("ray")
    cmd = (f"ip link set lo up && cd {ROOT} && RAY_AUTH_MODE=disabled CONTEXTSORT_LOOPBACK_NETNS=1 "
           f"{sys.executable} -m pytest -q -p no:cacheprovider -m 'ray and not slow' tests")
    p = subprocess.run(["unshare", "--net", "bash", "-c", cmd], capture_output=True, text=True, timeout=1800)
    tail = (p.stdout + p.stderr)[-6000:]
    assert p.returncode == 0, tail
    assert " passed" in p.stdout and " failed" not in p.stdout, tail
