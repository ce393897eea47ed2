"""contextsort: In-Context Pretraining data preparation (Shi et al., ICLR 2024).

Embed documents, build a kNN graph, remove near-duplicates, order documents so
related ones follow each other (each exactly once), and write the new order.

    >>> import contextsort
    >>> result = contextsort.run(["corpus.jsonl"], "runs/demo", k=10)   # doctest: +SKIP
"""

__version__ = "0.2.0"

from .api import pack_run, run  # noqa: E402
from .config import Config  # noqa: E402
from .errors import ConfigError, ContextsortError, InputError, RunDirError  # noqa: E402
from .pipeline import RunResult  # noqa: E402

__all__ = ["Config", "ConfigError", "ContextsortError", "InputError", "RunDirError", "RunResult", "pack_run", "run",
           "__version__"]
