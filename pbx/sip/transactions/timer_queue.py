"""Named deadlines per owner in a heap; cancelling is lazy (stale heap entries are skipped)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TimerQueue(Generic[K]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K, str]] = []
        self._live: dict[K, dict[str, int]] = {}  # owner -> timer name -> sequence of its entry
        self._seq = itertools.count()

    def arm(self, owner: K, name: str, at: float) -> None:
        """Arm (or re-arm) `name` for `owner`; an earlier setting of the same name is dropped."""
        seq = next(self._seq)
        self._live.setdefault(owner, {})[name] = seq
        heapq.heappush(self._heap, (at, seq, owner, name))

    def cancel(self, owner: K, name: str) -> None:
        timers = self._live.get(owner)
        if timers is not None:
            timers.pop(name, None)
            if not timers:
                del self._live[owner]

    def cancel_all(self, owner: K) -> None:
        self._live.pop(owner, None)

    def armed(self, owner: K) -> set[str]:
        return set(self._live.get(owner, ()))

    def _valid(self, seq: int, owner: K, name: str) -> bool:
        timers = self._live.get(owner)
        return timers is not None and timers.get(name) == seq

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and not self._valid(heap[0][1], heap[0][2], heap[0][3]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> Iterator[tuple[K, str]]:
        """Yield due timers one at a time, earliest first; the consumer may arm new ones."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, owner, name = heapq.heappop(heap)
            if self._valid(seq, owner, name):
                timers = self._live[owner]
                del timers[name]
                if not timers:
                    del self._live[owner]
                yield owner, name

    def __len__(self) -> int:
        """Heap entries including stale ones (for tests and housekeeping)."""
        return len(self._heap)
