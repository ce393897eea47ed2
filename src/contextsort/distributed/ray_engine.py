"""Ray as the engine: a session helper, Ray Data embedding, and Ray tasks for the partitions.

Ray only decides where the work runs: the embedding actors call the same
Embedder.encode, and the partition tasks call partition.partition_task (the
single-machine stage functions). Locally (no address) Ray starts on loopback with
no dashboard; with `address` ("auto" or HOST:PORT) it joins an existing cluster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np


class RayUnavailable(Exception):
    """Ray is not installed or cannot be reached."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--engine ray needs Ray: pip install 'contextsort[ray]' (or: pip install 'ray[data]')") from None
    return ray


def _package_root() -> str:
    """The folder that holds the contextsort package (put on the workers' path)."""
    return str(Path(__file__).resolve().parents[2])


class RaySession:
    """Starts (or joins) Ray once per run and shuts down only what it started.

    address None: a local Ray on 127.0.0.1 with `num_cpus` CPUs (None: all), no
    dashboard. address "auto" or "HOST:PORT": join that cluster; the contextsort
    package of this process is shipped to the workers (runtime_env py_modules), so the
    cluster runs the same code. Already inside ray.init(): use that, start nothing.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, quiet: bool = True):
        self.address = address
        self.num_cpus = num_cpus
        self.quiet = quiet
        self._started = False
        self.ray = None

    def start(self) -> "RaySession":
        if self.ray is not None:
            return self
        ray = _import_ray()
        self.ray = ray
        if ray.is_initialized():
            return self
        import logging

        kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=not self.quiet)
        pkg = _package_root()
        try:
            if self.address:
                ray.init(address=self.address, runtime_env={"py_modules": [str(Path(pkg) / "contextsort")]}, **kwargs)
            else:
                path = os.pathsep.join(x for x in [pkg, os.environ.get("PYTHONPATH", "")] if x)
                ray.init(
                    num_cpus=self.num_cpus,
                    runtime_env={"env_vars": {"PYTHONPATH": path}}, **kwargs,
                )
        except ConnectionError as e:
            raise RayUnavailable(f"cannot connect to Ray at {self.address!r}: {e}") from None
        self._started = True
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = not self.quiet
            ctx.print_on_execution_start = False
        except Exception:  # older Ray Data: cosmetic only
            pass
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

    # -- partition tasks -----------------------------------------------------
    def mapper(self, max_in_flight: int | None = None) -> Callable[[Callable, Iterable[tuple]], Iterator[tuple[int, object]]]:
        """A mapper for partitioned_stages that runs each task as a Ray task (1 CPU each).

        At most `max_in_flight` tasks (default 2 x cluster CPUs) are submitted at
        once, so the driver never holds every partition's inputs at the same time.
        """
        ray = self.start().ray
        limit = max_in_flight or 2 * self.cpus()

        def run(fn: Callable, args_list: Iterable[tuple]) -> Iterator[tuple[int, object]]:
            remote = ray.remote(num_cpus=1, max_retries=2)(fn)
            pending: dict = {}
            for i, args in enumerate(args_list):
                pending[remote.remote(*args)] = i
                while len(pending) >= limit:
                    yield from _collect(ray, pending, 1)
            while pending:
                yield from _collect(ray, pending, 1)

        return run

    # -- embedding with Ray Data ----------------------------------------------
    def embed(
        self,
        store_dir: Path,
        n: int,
        embedder: str,
        dim: int,
        out: np.ndarray,
        batch_size: int = 512,
        workers: int | None = None,
        progress: Callable[[int], None] | None = None,
        options: dict | None = None,
    ) -> None:
        """Fill out[n, dim] with the embeddings of the store's texts, one model per actor.

        The actors read texts by offset from the document store, so on a multi-node
        cluster the run directory must be on storage every node can read.
        """
        ray = self.start().ray
        actors = max(1, min(workers or self.cpus(), self.cpus()))
        # Row ids are put in the object store by the driver (no read tasks): with every CPU
        # held by an embedding actor, read tasks would wait for a CPU forever.
        step = max(batch_size, -(-n // 10_000))
        ds = ray.data.from_numpy([np.arange(s, min(n, s + step), dtype=np.int64) for s in range(0, n, step)])
        ds = ds.map_batches(
            _EmbedActor,
            fn_constructor_kwargs={"store_dir": str(store_dir), "spec": embedder, "options": options or {}},
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=actors,
            num_cpus=1,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            rows = np.asarray(batch["data"], dtype=np.int64)
            vec = np.asarray(batch["emb"], dtype=np.float32).reshape(len(rows), dim)
            out[rows] = vec
            if progress is not None:
                progress(len(rows))


def _collect(ray, pending: dict, num: int) -> Iterator[tuple[int, object]]:
    done, _ = ray.wait(list(pending), num_returns=num)
    for ref in done:
        i = pending.pop(ref)
        yield i, ray.get(ref)


class _EmbedActor:
    """Ray Data actor: one embedder instance per worker, texts read from the document store."""

    def __init__(self, store_dir: str, spec: str, options: dict | None = None):
        from ..corpus import DocStore
        from ..embed import get_embedder

        self.store = DocStore(Path(store_dir))
        self.embedder = get_embedder(spec, **(options or {}))

    def __call__(self, batch: dict) -> dict:
        rows = np.asarray(batch["data"], dtype=np.int64)
        texts = [self.store.text(int(i)) for i in rows]
        return {"data": rows, "emb": self.embedder.encode(texts)}
