"""Orderings of the kept documents. Each takes the document graph and returns a permutation."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..graph import Graph
from .paper import paper_order


def random_order(graph: Graph, seed: int = 0) -> np.ndarray:
    """The Standard baseline: a seeded random permutation."""
    return np.random.default_rng(seed).permutation(graph.n).astype(np.int64)


ORDERS: dict[str, Callable[..., np.ndarray]] = {
    "paper": paper_order,
    "random": random_order,
}


def compute_order(name: str, graph: Graph, seed: int = 0) -> np.ndarray:
    """Run the ordering `name` on the graph."""
    if name not in ORDERS:
        raise ValueError(f"unknown order '{name}' (available: {', '.join(sorted(ORDERS))})")
    fn = ORDERS[name]
    if name == "random":
        return fn(graph, seed=seed)
    return fn(graph)
