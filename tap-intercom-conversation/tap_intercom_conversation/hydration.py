"""Hydration in a bounded pool whose results come back in the order they were asked for.

Records must leave the tap in search order, from the sync thread, so that STATE never runs ahead of
what was emitted; only the GET requests themselves run concurrently.
"""

from __future__ import annotations

import typing as t
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

T = t.TypeVar("T")
R = t.TypeVar("R")


def ordered_map(
    function: t.Callable[[T], R],
    items: t.Iterable[T],
    *,
    workers: int,
) -> t.Iterator[tuple[T, R]]:
    """Yield (item, function(item)) in input order, with at most `workers` calls in flight.

    At most 2 * workers items are read ahead, so memory does not grow with the input.
    """
    if workers <= 1:
        for item in items:
            yield item, function(item)
        return
    pending: deque[tuple[T, Future[R]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hydrate") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(function, item)))
                while len(pending) >= 2 * workers:
                    first, future = pending.popleft()
                    yield first, future.result()
            while pending:
                first, future = pending.popleft()
                yield first, future.result()
        finally:
            for _, future in pending:
                future.cancel()
