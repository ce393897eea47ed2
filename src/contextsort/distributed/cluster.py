"""A Ray cluster of separate nodes on this machine (`ray start`), for tests and benchmarks.

Every node is a `ray start --block` process in its own session, on 127.0.0.1 (run inside
a loopback-only network namespace: `unshare --net`, then `ip link set lo up`). `stop()`
kills exactly the process trees this object started, never other Ray processes on the
machine (`ray stop` would stop them all). `MemorySampler` records each node's peak RSS. Linux only (reads /proc).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path


def children_of() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process now (Linux /proc)."""
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            out.setdefault(ppid, []).append(int(d))
    return out


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (empty when pid is gone)."""
    if not Path(f"/proc/{pid}").exists():
        return []
    kids = children_of()
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(kids.get(p, []))
    return tree


def proc_read(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text(errors="replace")
    except OSError:
        return ""


def rss_bytes(pid: int) -> int:
    for line in proc_read(pid, "status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pin_to(core: int):
    """A preexec_fn that binds the new process (and what it starts) to one CPU core."""
    return lambda: os.sched_setaffinity(0, {core})


class Node:
    """One `ray start --block` process (head or worker) and everything it started."""

    def __init__(self, args: list[str], env: dict, cpus: int = 1, core: int | None = None):
        # core: pin the node and every process it starts to one CPU core, so that nodes on one
        # machine behave like separate 1-core machines (threads of numba, FAISS or tokenizers
        # inside a 1-CPU task would otherwise use every core)
        self.proc = subprocess.Popen(["ray", "start", "--block", f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1",
                                      "--disable-usage-stats", *args], env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=None if core is None else pin_to(core))

    def tree(self) -> list[int]:
        return process_tree(self.proc.pid)

    def raylet(self) -> int:
        """Pid of the node's raylet process (kill it to lose the node)."""
        return next(p for p in self.tree() if proc_read(p, "comm").strip() == "raylet")

    def running_task(self, task: str = "run_with_node") -> bool:
        """Whether one of this node's workers is executing `task` now (Ray sets the process title)."""
        return any(task in proc_read(p, "cmdline") for p in self.tree())

    def rss(self) -> int:
        """Bytes resident in this node's processes now."""
        return sum(rss_bytes(p) for p in self.tree())

    def stop(self) -> None:
        for p in reversed(self.tree()):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(timeout=30)


class LocalCluster:
    """A head on 127.0.0.1:port (temp files under temp_dir) plus the worker nodes added to it."""

    def __init__(self, temp_dir: str | os.PathLike, port: int, cpus: int = 1, pin_cores: bool = False):
        self.address = f"127.0.0.1:{port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        self.cpus = cpus
        self.pin_cores = pin_cores  # node i on core i (modulo the machine's cores)
        self.nodes = [Node(["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={Path(temp_dir)}"],
                           self.env, cpus, core=0 if pin_cores else None)]
        try:
            self.wait_for(1)
        except BaseException:
            self.stop()
            raise

    def add_worker(self) -> Node:
        core = len(self.nodes) % (os.cpu_count() or 1) if self.pin_cores else None
        node = Node([f"--address={self.address}"], self.env, self.cpus, core=core)
        self.nodes.append(node)
        self.wait_for(sum(n.proc.poll() is None for n in self.nodes))
        return node

    def node_ids(self) -> set[str]:
        """Ids of the nodes the cluster reports alive (as the manifest's node_ids spell them)."""
        out = subprocess.run(["ray", "status", f"--address={self.address}"], env=self.env, capture_output=True,
                             text=True, timeout=60).stdout
        active = out.split("Active:")[1].split("Pending:")[0] if "Active:" in out else ""
        return set(re.findall(r"node_([0-9a-f]+)", active))

    def wait_for(self, count: int, timeout: float = 120) -> None:
        t = time.time()
        while time.time() - t < timeout:
            if len(self.node_ids()) >= count:
                return
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster at {self.address} did not reach {count} nodes in {timeout:.0f}s")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class MemorySampler:
    """Samples, in a thread, the RSS of each node's processes and of extra processes (the driver); keeps the peaks."""

    def __init__(self, nodes: list[Node], extra: dict[str, int] | None = None, every: float = 0.5):
        self.nodes = nodes
        self.extra = extra or {}
        self.every = every
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = {f"node{i}": n.rss() for i, n in enumerate(self.nodes)}
            for name, pid in self.extra.items():
                now[name] = sum(rss_bytes(p) for p in process_tree(pid))
            for k, v in now.items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            self._stop.wait(self.every)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
