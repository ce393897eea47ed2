"""Run an iterator a little ahead of its consumer, in a thread of its own.

Ingest reads and parses the input (pyarrow, numba kernels: both run without the GIL) while
the store writer writes what came before (file writes run without the GIL too), so on two
cores the reading of block i+1 overlaps the writing of block i. The consumer sees exactly
the items, in exactly the order, the iterator gives, and an exception the iterator raises
comes out of `prefetched` after every item yielded before it, as in a plain loop: the store
and the rejects are the same either way (tests/test_prefetch.py).

Items travel in lists of up to `batch`, so that a run of one-record items (the line-by-line
reader) costs one queue hand-over per list, not per record.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

DONE = object()  # the producer's last message: the iterator is exhausted


class ProducerError:
    """The exception the iterator raised, carried to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterable[T], depth: int = 2, batch: int = 1024, big: type | tuple = ()) -> Iterator[T]:
    """Yield `items` in order while a thread computes the next ones, at most `depth` lists ahead.

    A list is handed over when it holds `batch` items or when an item of type `big` (a block
    of many records) joins it. Leaving the loop early (break, an exception in the consumer)
    stops the thread before this generator returns.
    """
    hand = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message) -> bool:
        while not stop.is_set():
            try:
                hand.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        pending: list = []
        try:
            for item in items:
                pending.append(item)
                if len(pending) >= batch or (big and isinstance(item, big)):
                    if not put(pending):
                        return
                    pending = []
            if pending and not put(pending):
                return
            put(DONE)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer, after the items before it
            if pending and not put(pending):
                return
            put(ProducerError(e))

    thread = threading.Thread(target=produce, name="contextsort-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            message = hand.get()
            if message is DONE:
                return
            if isinstance(message, ProducerError):
                raise message.error
            yield from message
    finally:
        stop.set()
        thread.join()
