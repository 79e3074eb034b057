"""Turns on a model that every stream of a service shares: one piece of work at a time (a clause to speak, audio
to animate), a stream's first piece (what its listener waits on before anything plays) ahead of the later pieces
of other streams, and otherwise in the order they were asked for. Streams of several sessions then share the CPU
without one session's long reply holding back another's first clause or first frame."""

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PriorityTurns:
    def __init__(self):
        self._busy = False
        self._waiting: list[tuple[int, int, asyncio.Future]] = []  # (0 first or 1 later, arrival, wake)
        self._arrivals = itertools.count()

    @asynccontextmanager
    async def turn(self, first: bool) -> AsyncIterator[None]:
        if self._busy:
            wake = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (0 if first else 1, next(self._arrivals), wake))
            try:
                await wake
            except asyncio.CancelledError:
                if wake.done() and not wake.cancelled():  # the turn was handed over as the waiter was cancelled
                    self._hand_over()
                raise
        else:
            self._busy = True
        try:
            yield
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        while self._waiting:
            *_, wake = heapq.heappop(self._waiting)
            if not wake.done():  # a waiter cancelled meanwhile is passed over
                wake.set_result(None)
                return
        self._busy = False
