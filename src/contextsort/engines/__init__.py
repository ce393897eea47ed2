"""Engines decide where work runs; they never change what a stage computes or produces.

Every engine offers the same few operations, and stages call only these:

- `map(fn, args_list, ordered=False)`: run `fn(*args)` for each argument tuple as one
  task (a batch of documents to embed, a partition to search or walk, a shard to write)
  and yield `(index, result)`; `ordered=True` yields in submission order.
- `workers()`: how many tasks can usefully run at once.
- `take_node_ids()`: the nodes that ran tasks since the last call (recorded per stage in the manifest).
- `close()`: release what the engine started.

`LocalEngine` runs tasks in this process, one after another; `RayEngine` runs them as
Ray tasks on a local Ray or a cluster. Functions given to `map` must be importable
module-level functions whose arguments pickle (numpy arrays, paths, plain data).
"""

from __future__ import annotations

from .local import LocalEngine


def get_engine(engine_config, log=None):
    """The engine named by an EngineConfig ("local" or "ray"); Ray is started on first use."""
    if engine_config.name == "ray":
        from .ray import RayEngine

        return RayEngine(engine_config.ray_address, engine_config.workers)
    return LocalEngine()


__all__ = ["LocalEngine", "get_engine"]
