"""An ordered, bounded thread-pool map: decoding overlaps with computing, memory stays flat."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["default_workers", "ordered_map"]

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Decoding threads used by default: up to 4, never more than the CPUs."""
    return max(1, min(4, os.cpu_count() or 1))


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """Yield ``function(item)`` in the order of ``items``, computed by ``workers`` threads.

    At most ``2 * workers`` results are pending at any time, so the memory held does not
    grow with the number of items. With ``workers <= 1`` everything runs in the caller's
    thread. An exception raised by ``function`` is re-raised when its result is reached.
    """
    if workers <= 1:
        for item in items:
            yield function(item)
        return
    window = 2 * workers
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pimo-read") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
