"""A real two-node Ray cluster (`ray start`, 1 CPU per node, all on 127.0.0.1) running the CLI.

Runs only inside the loopback-only network namespace (test_ray_netns.py). The cluster
(distributed/cluster.py) stops exactly the nodes it started, even when a test fails
(never `ray stop`, which stops every Ray process on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_jsonl
from contextsort.distributed.cluster import LocalCluster

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
PER_TOPIC = 250  # BBC subset: 5 topics x 250 = 1,250 documents (two automatic partitions)


def bbc_subset(tmp: Path, bbc: Path) -> Path:
    rows = []
    for topic in sorted(p for p in bbc.iterdir() if p.is_dir()):
        for f in sorted(topic.iterdir())[:PER_TOPIC]:
            rows.append({"id": f"{topic.name}/{f.name}", "label": topic.name,
                         "text": f.read_bytes().decode("utf-8", errors="replace")})
    return write_jsonl(tmp / "bbc.jsonl", rows)


def cli_run(inp: Path, out: Path, address: str, *extra: str, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-m", "contextsort.cli", "run", str(inp), "-o", str(out), "--engine", "ray",
           "--ray-address", address, *extra]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.communicate(timeout=900) if wait else p


def check_run(out: Path, n_input: int) -> tuple[dict, np.ndarray]:
    """The run's manifest and order, after checking that counts add up and the order is
    a permutation of exactly the kept documents (read back from ordered.jsonl too)."""
    man = json.loads((out / "manifest.json").read_text())
    c = man["counts"]
    assert c["adds_up"] and c["records_read"] == n_input
    assert c["kept"] + c["duplicates"] + c["rejected"] == n_input
    order = np.load(out / "order.npy")
    keep = np.load(out / "embed_valid.npy") & (np.load(out / "dup_of.npy") < 0)
    assert np.array_equal(np.sort(order), np.flatnonzero(keep))
    with open(out / "ordered.jsonl") as fh:
        ids = [json.loads(line)["id"] for line in fh]
    assert len(ids) == len(set(ids)) == c["kept"]
    return man, order


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, bbc_path):
    path = bbc_subset(tmp_path_factory.mktemp("cluster_in"), bbc_path)
    return path, sum(1 for _ in open(path))


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, corpus):
    """A default-settings run on a head + one worker node; returns (run dir, the cluster's node ids)."""
    pytest.importorskip("ray")
    tmp = tmp_path_factory.mktemp("cluster")
    temp = Path(f"/tmp/csr{os.getpid()}a")  # short: Ray's socket paths live under it
    cluster = LocalCluster(temp, 6391)
    try:
        cluster.add_worker()
        nodes = cluster.node_ids()
        assert len(nodes) == 2
        out, _ = cli_run(corpus[0], tmp / "run", cluster.address)
        assert (tmp / "run" / "manifest.json").exists(), out[-3000:]
        return tmp / "run", nodes
    finally:
        cluster.stop()
        shutil.rmtree(temp, ignore_errors=True)


def test_two_node_cluster_uses_both_nodes_and_matches_local(cluster_run, corpus, tmp_path):
    import contextsort

    run, nodes = cluster_run
    man, order = check_run(run, corpus[1])
    st = man["stages"]
    assert st["neighbors"]["engine"] == "ray" and st["partition"]["partitions"] == 2
    # both nodes did the work of the distributed stages, and no other node appears
    for stage in ("embed", "neighbors"):
        assert set(st[stage]["node_ids"]) == nodes, (stage, st[stage]["node_ids"], nodes)
    assert st["tokenize"]["tasks"] >= 2 and set(st["tokenize"]["node_ids"]) <= nodes  # ranges of the store as tasks
    assert st["order"]["walk"] == "global"  # the merged graph is small: one walk, as on one machine
    # the default signal (hybrid) was built, per partition, not replaced
    assert st["neighbors"]["similarity"] == "hybrid"
    assert {p["similarity"] for p in st["neighbors"]["similarity_params"]["per_partition"]} == {"hybrid"}
    local = contextsort.run([corpus[0]], tmp_path / "local")
    assert local.manifest["stages"]["neighbors"]["similarity"] == "hybrid"
    assert local.counts["records_read"] == man["counts"]["records_read"]
    la_local = local.metrics["label_agreement"]["ordered"]
    la_ray = man["metrics"]["label_agreement"]["ordered"]
    assert la_ray >= 0.95 * la_local, (la_ray, la_local)


def test_killing_a_worker_raylet_mid_run_still_completes(cluster_run, corpus, tmp_path):
    """Ray retries the lost node's tasks elsewhere; the run completes, adds up, and gives
    the same order as the undisturbed run (same partitions, deterministic tasks)."""
    clean_run, _ = cluster_run
    temp = Path(f"/tmp/csr{os.getpid()}b")
    cluster = LocalCluster(temp, 6392)
    try:
        worker = cluster.add_worker()
        p = cli_run(corpus[0], tmp_path / "run", cluster.address, "--partitions", "2", wait=False)
        t = time.time()
        while not worker.running_task() and p.poll() is None and time.time() - t < 600:
            time.sleep(0.2)
        assert p.poll() is None, "the run ended before the worker node ran a task"
        os.kill(worker.raylet(), signal.SIGKILL)
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0, out[-3000:]
    finally:
        cluster.stop()
        shutil.rmtree(temp, ignore_errors=True)
    man, order = check_run(tmp_path / "run", corpus[1])
    assert np.array_equal(order, np.load(clean_run / "order.npy"))
    assert np.array_equal(np.load(tmp_path / "run" / "dup_of.npy"), np.load(clean_run / "dup_of.npy"))
