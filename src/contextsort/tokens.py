"""Tokenize once: views of the run's token store for the stages that read token ids.

The tokenize stage (`pack.tokenize_store`) writes every stored document once, in store
order, as ``[BOS] ids EOS`` into ``tokens/stream.bin`` (``doc_off.npy`` gives each
document's span). Packing reads those spans as they are; the static embedder and the
lexical signal read only the document's own ids (`content_spans`: separators dropped),
so no stage tokenizes the text a second time.
"""

from __future__ import annotations

import numpy as np

from .pack import TokenStream


def content_spans(stream: TokenStream, max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(start int64 [N], length int64 [N]) of each document's ids in ``stream.tokens``,
    without its separators; lengths cut to `max_tokens` (None or 0: no cut)."""
    bos = 1 if stream.meta.get("bos") else 0
    start = stream.doc_off[:-1].astype(np.int64) + bos
    length = np.diff(stream.doc_off).astype(np.int64) - 1 - bos
    if max_tokens:
        np.minimum(length, int(max_tokens), out=length)
    return start, length


def spans_of_lists(ids_list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat ids int64, start, length) for a list of id sequences (tests, small inputs)."""
    lengths = np.fromiter((len(x) for x in ids_list), dtype=np.int64, count=len(ids_list))
    start = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths):
        start[1:] = np.cumsum(lengths)[:-1]
    flat = np.fromiter((int(t) for x in ids_list for t in x), dtype=np.int64, count=int(lengths.sum()))
    return flat, start, lengths
