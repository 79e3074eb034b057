"""Turns on the one CPU engine that several generations share, a step (a token, or a prompt) at a time.

A generation that has not yet produced its first few tokens (the first clause the voice needs) goes ahead of the
tails of longer replies; among equals, whoever asked first. A tail gives way after every token, so a long story
slows down while a new turn starts instead of holding it back until the story ends.
"""

import heapq
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Turnstile:
    def __init__(self):
        self._changed = threading.Condition()
        self._busy = False
        self._waiting: list[tuple[int, int]] = []  # (0 leading or 1 tail, arrival), best first
        self._arrivals = itertools.count()

    @contextmanager
    def turn(self, leading: bool) -> Iterator[None]:
        ticket = (0 if leading else 1, next(self._arrivals))
        with self._changed:
            heapq.heappush(self._waiting, ticket)
            while self._busy or self._waiting[0] != ticket:
                self._changed.wait()
            heapq.heappop(self._waiting)
            self._busy = True
        try:
            yield
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()
