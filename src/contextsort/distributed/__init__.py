"""Scale-out: the same stage functions, run partitioned, locally or on a Ray cluster.

- partition.py: engine-free partitioned kNN + dedup + traversal (k-means partitions,
  border search into neighbouring partitions, partitions ordered by the same traversal).
- ray_engine.py: a Ray session, Ray Data embedding (one model per actor), Ray tasks.

The Runner uses `params_from_config`, `RaySession` and `partitioned_stages` when
`config.engine.name == "ray"`.
"""

from __future__ import annotations

from .partition import (
    PartitionedResult,
    PartitionParams,
    auto_partitions,
    local_mapper,
    partition_task,
    partitioned_stages,
)
from .ray_engine import RaySession, RayUnavailable

__all__ = [
    "PartitionParams",
    "PartitionedResult",
    "RaySession",
    "RayUnavailable",
    "auto_partitions",
    "local_mapper",
    "params_from_config",
    "partition_task",
    "partitioned_stages",
    "run_partitioned",
]


def params_from_config(cfg) -> PartitionParams:
    """PartitionParams from a contextsort Config (knn, dedup, order, seed and engine sections)."""
    return PartitionParams(
        k=cfg.knn.k, index=cfg.knn.index, nprobe=cfg.knn.nprobe,
        threshold=cfg.dedup.threshold, exact=cfg.dedup.exact, algorithm=cfg.order.algorithm, seed=cfg.seed,
        partitions=cfg.engine.partitions, spill=cfg.engine.spill,
    )


def run_partitioned(emb, valid, text_hash, cfg, session: RaySession | None = None, out_ids=None, out_sims=None, log=None) -> PartitionedResult:
    """Partitioned kNN + dedup + traversal for a Config; on Ray when `session` is given, else in-process."""
    params = params_from_config(cfg)
    if session is None:
        return partitioned_stages(emb, valid, text_hash, params, local_mapper, 1, out_ids, out_sims, log)
    workers = cfg.engine.workers or session.cpus()
    return partitioned_stages(emb, valid, text_hash, params, session.mapper(), workers, out_ids, out_sims, log)
