"""Orderings of the kept documents. Each takes the document graph and returns a permutation.

| name | what | permutation |
|---|---|---|
| paper | Algorithm 1 (greedy walk, heaviest unvisited neighbour, jump to min degree) | yes |
| release | the public release: first unseen of the top 9, 21-doc segments, short ones merged | yes |
| edge | greedy edge matching (heaviest edges first, degree <= 2, no cycles), pieces linked | yes |
| improved | `edge` + endpoint 2-opt / Or-opt on the pieces + Or-opt on the whole path; never below `paper` (the default) | yes |
| random | Standard baseline | yes |
| cluster | k-means (FAISS) clusters, random order inside and between clusters | yes |
| knn | kNN baseline: every document followed by its retrieved neighbours | NO: documents repeat |

An order function takes the graph plus any of the keyword inputs `seed`, `knn_ids`
(each document's retrieved neighbours, renumbered like the graph) and `emb` (embeddings
of the graph's nodes) and option keywords; `compute_order` passes only what it accepts.
"""

from __future__ import annotations

import inspect
from typing import Callable

import numpy as np

from ..graph import Graph
from .baselines import cluster_order, knn_order
from .greedy import edge_order, improved_order
from .paper import paper_order
from .release import release_order


def random_order(graph: Graph, seed: int = 0) -> np.ndarray:
    """The Standard baseline: a seeded random permutation."""
    return np.random.default_rng(seed).permutation(graph.n).astype(np.int64)


ORDERS: dict[str, Callable[..., np.ndarray]] = {
    "paper": paper_order,
    "random": random_order,
    "release": release_order,
    "edge": edge_order,
    "improved": improved_order,
    "knn": knn_order,
    "cluster": cluster_order,
}

# Orders whose output repeats documents (not a permutation): the runner counts appearances.
REPEATING_ORDERS = frozenset({"knn"})


def is_permutation_order(name: str) -> bool:
    """True when `name` returns every node exactly once."""
    return name not in REPEATING_ORDERS


def order_inputs(name: str) -> set[str]:
    """Keyword inputs (seed, knn_ids, emb, options) that the order `name` accepts."""
    _check(name)
    return set(inspect.signature(ORDERS[name]).parameters) - {"graph"}


def compute_order(name: str, graph: Graph, seed: int = 0, knn_ids=None, emb=None, **options) -> np.ndarray:
    """Run the ordering `name` on the graph, passing it only the inputs it takes.

    Options an order does not take, and None values, are dropped, so one config can
    carry every order's options.
    """
    _check(name)
    accepted = order_inputs(name)
    kwargs = {"seed": seed, "knn_ids": knn_ids, "emb": emb, **options}
    kwargs = {k: v for k, v in kwargs.items() if k in accepted and v is not None}
    return ORDERS[name](graph, **kwargs)


def _check(name: str) -> None:
    if name not in ORDERS:
        raise ValueError(f"unknown order '{name}' (available: {', '.join(sorted(ORDERS))})")
