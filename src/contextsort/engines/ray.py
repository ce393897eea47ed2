"""The Ray engine: tasks run as Ray tasks on a local Ray (started here, loopback, no
dashboard) or on a cluster (`address` "auto" or HOST:PORT, joined, never shut down).

On a cluster the contextsort package of this process is shipped to the workers
(runtime_env py_modules), so every node runs the same code; the run directory must be
on storage every node can read and write.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import DependencyMissing, ResourceError


class RayUnavailable(DependencyMissing):
    """Ray is not installed or the cluster cannot be reached."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--engine ray needs Ray: pip install 'contextsort[ray]' (or: pip install 'ray[data]')") from None
    return ray


def package_root() -> str:
    """The folder that holds the contextsort package (put on the workers' path)."""
    return str(Path(__file__).resolve().parents[2])


def run_with_node(fn: Callable, args: tuple) -> tuple[str, object]:
    """Runs on a worker: the task's result and the id of the node that computed it."""
    import ray

    return ray.get_runtime_context().get_node_id(), fn(*args)


class RaySession:
    """Starts (or joins) Ray once and shuts down only what it started."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, quiet: bool = True):
        self.address = address
        self.num_cpus = num_cpus
        self.quiet = quiet
        self._started = False
        self.ray = None

    def start(self) -> "RaySession":
        if self.ray is not None:
            return self
        ray = import_ray()
        self.ray = ray
        if ray.is_initialized():
            return self
        kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=not self.quiet)
        pkg = package_root()
        try:
            if self.address:
                ray.init(address=self.address, runtime_env={"py_modules": [str(Path(pkg) / "contextsort")]}, **kwargs)
            else:
                path = os.pathsep.join(x for x in [pkg, os.environ.get("PYTHONPATH", "")] if x)
                ray.init(num_cpus=self.num_cpus, runtime_env={"env_vars": {"PYTHONPATH": path}}, **kwargs)
        except ConnectionError as e:
            self.ray = None
            raise RayUnavailable(f"cannot connect to Ray at {self.address!r}: {e}") from None
        self._started = True
        return self

    def cpus(self) -> int:
        return max(1, int(self.start().ray.cluster_resources().get("CPU", 1)))

    def close(self) -> None:
        if self._started and self.ray is not None and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False
        self.ray = None

    def __enter__(self) -> "RaySession":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class RayEngine:
    """Tasks as Ray tasks (1 CPU each, spread over the nodes, retried twice if a worker or node dies); at most 2 x CPUs in flight."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, quiet: bool | None = None):
        quiet = not logging.getLogger("contextsort").isEnabledFor(logging.INFO) if quiet is None else quiet
        self.session = RaySession(address, workers, quiet=quiet)
        self._workers = workers
        self._nodes: set[str] = set()

    def workers(self) -> int:
        return self._workers or self.session.cpus()

    def map(self, fn: Callable, args_list: Iterable[tuple], ordered: bool = False) -> Iterator[tuple[int, object]]:
        ray = self.session.start().ray
        limit = 2 * self.workers()
        # SPREAD: a partition or batch per node before doubling up, so every node does its share
        remote = ray.remote(num_cpus=1, max_retries=2, scheduling_strategy="SPREAD")(run_with_node)
        pending: dict = {}
        ready: dict[int, object] = {}
        state = {"next": 0}

        def collect() -> None:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    node, result = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, OSError) and cause.errno == 28:
                        raise ResourceError(f"no space left on a worker's disk: {cause}") from None
                    if isinstance(cause, Exception):
                        raise cause from None
                    raise
                self._nodes.add(node)
                ready[i] = result

        def emit() -> Iterator[tuple[int, object]]:
            if not ordered:
                for i in list(ready):
                    yield i, ready.pop(i)
                return
            while state["next"] in ready:
                i = state["next"]
                state["next"] += 1
                yield i, ready.pop(i)

        for i, args in enumerate(args_list):
            pending[remote.remote(fn, args)] = i
            while len(pending) >= limit:
                collect()
                yield from emit()
        while pending:
            collect()
            yield from emit()

    def take_node_ids(self) -> list[str]:
        """Nodes that ran tasks since the last call (the driver's node when none did)."""
        nodes = sorted(self._nodes)
        self._nodes.clear()
        if not nodes and self.session.ray is not None and self.session.ray.is_initialized():
            nodes = [self.session.ray.get_runtime_context().get_node_id()]
        return nodes

    def close(self) -> None:
        self.session.close()

