"""Time of `encode_to_memmap`'s writing alone at 1M x 256 float32 (prints JSON).

The embedder returns one fixed batch of unit vectors (no model time), so what is timed is
the batches' rows written at their length-ordered positions, synced per batch, validated
and committed. Run it with two source trees to compare writers (the file is the same):

    python benchmarks/embed_write.py --src OLD/src --out /work/cache/embw/wt/e.npy
    python benchmarks/embed_write.py --src src --out /work/cache/embw/wt/e.npy
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


class FixedEmbedder:
    """Unit vectors from one seeded batch, sliced to each batch's size."""

    name, dim = "fixed", 256

    def __init__(self, batch: int):
        v = np.random.default_rng(0).standard_normal((batch, self.dim)).astype(np.float32)
        self.vectors = v / np.linalg.norm(v, axis=1, keepdims=True)

    def encode(self, texts):
        return self.vectors[: len(texts)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=16384)
    a = ap.parse_args()
    sys.path.insert(0, str(Path(a.src).resolve()))
    from contextsort.embed.batched import encode_to_memmap

    lengths = np.random.default_rng(1).integers(50, 400, a.n)
    out = Path(a.out)
    out.unlink(missing_ok=True)
    t = time.perf_counter()
    encode_to_memmap(FixedEmbedder(a.batch), lambda idx: [""] * len(idx), lengths, out, a.batch)
    print(json.dumps({"src": a.src, "n": a.n, "batch": a.batch, "seconds": round(time.perf_counter() - t, 2)}))


if __name__ == "__main__":
    main()
