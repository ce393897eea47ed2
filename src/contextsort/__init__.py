"""contextsort: In-Context Pretraining data preparation (Shi et al., ICLR 2024).

Embed documents, build a kNN graph, remove near-duplicates, order documents so
related ones follow each other (each exactly once), and write the new order.

    >>> import contextsort
    >>> result = contextsort.run(["corpus.jsonl"], "runs/demo")   # doctest: +SKIP
"""

__version__ = "0.1.0"

from .config import Config  # noqa: E402
from .runner import RunResult, pack_run, run  # noqa: E402

__all__ = ["Config", "RunResult", "pack_run", "run", "__version__"]
