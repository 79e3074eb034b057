"""Turns on a model that every stream of a service shares: one piece of work at a time (a clause to speak, audio
to animate, a frame to draw), the piece whose listener needs it soonest first (earliest deadline first), in the
order they were asked for among equals. A stream's first piece is due at once (its listener waits on it before
anything plays); a later one when its listener will reach it (`Playout`). Streams of several sessions then share
the CPU so that a reply just begun, a moment of media in hand, gets its next frames before a reply seconds ahead
of its listener, and one session's long reply never holds back another's first clause or first frame."""

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

CLIENT_JITTER_S = 0.12  # the browser app's jitter buffer (services/gateway/web/src/lib/player.js)


class Playout:
    """When a stream's listener will need each moment of its output: the listener starts playing a segment
    `delay_s` (the client's jitter buffer) after the stream's first output of it and then plays in real time. An
    estimate made where the output is made: a listener who paused or ran dry plays later than this, never earlier,
    so the stream is never put after others it should go before."""

    def __init__(self, delay_s: float = CLIENT_JITTER_S, clock: Callable[[], float] = time.monotonic):
        self._delay_s = delay_s
        self._clock = clock
        self._origin: float | None = None  # when position 0 of the segment plays

    def begin(self, position_s: float) -> None:
        """The segment's first output, at `position_s` of the stream, goes out now."""
        self._origin = self._clock() + self._delay_s - position_s

    def reset(self) -> None:
        """A new segment: its first output is due at once."""
        self._origin = None

    @property
    def begun(self) -> bool:
        return self._origin is not None

    def due(self, position_s: float) -> float:
        """When the listener will play `position_s` of the stream (now, before the segment's first output)."""
        return self._clock() if self._origin is None else self._origin + position_s


class PriorityTurns:
    def __init__(self):
        self._busy = False
        self._waiting: list[tuple[float, int, asyncio.Future]] = []  # (due, arrival, wake)
        self._arrivals = itertools.count()

    @asynccontextmanager
    async def turn(self, due: float) -> AsyncIterator[None]:
        """A turn for a piece of work its listener needs at `due` (time.monotonic() seconds)."""
        if self._busy:
            wake = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (due, next(self._arrivals), wake))
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
