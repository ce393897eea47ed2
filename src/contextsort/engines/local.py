"""The local engine: every task runs in this process, in submission order."""

from __future__ import annotations

import socket
from typing import Callable, Iterable, Iterator


class LocalEngine:
    name = "local"

    def map(self, fn: Callable, args_list: Iterable[tuple], ordered: bool = False) -> Iterator[tuple[int, object]]:
        for i, args in enumerate(args_list):
            yield i, fn(*args)

    def workers(self) -> int:
        return 1

    def take_node_ids(self) -> list[str]:
        return [f"local:{socket.gethostname()}"]

    def close(self) -> None:
        pass
