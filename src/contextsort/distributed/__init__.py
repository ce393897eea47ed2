"""Scale-out: partitions by k-means, kNN and the walk per partition (partition.py).

The pipeline's partition, neighbors and order stages call these functions through the
engine's `map`, so the same code runs in this process or as Ray tasks (engines/).
"""

from __future__ import annotations

from ..engines.ray import RaySession, RayUnavailable
from .partition import (
    PartitionedResult,
    PartitionParams,
    Partitions,
    auto_partitions,
    local_mapper,
    make_partitions,
    partitioned_knn,
    partitioned_order,
    partitioned_stages,
)

__all__ = [
    "PartitionParams", "PartitionedResult", "Partitions", "RaySession", "RayUnavailable", "auto_partitions",
    "local_mapper", "make_partitions", "partitioned_knn", "partitioned_order", "partitioned_stages",
]
