"""How many conversations one gateway (and the stages behind it) takes at once: a configured ceiling, below it what
its machine's measured load says it carries (`machine_load.py`: refused before anyone stutters), and what this
machine was seen to hold.

`GATEWAY_MAX_SESSIONS` is a number someone chose; a slower machine, or one whose cores another process takes,
holds fewer. So the gateway watches its admitted replies as their listeners' players play them (`playback.py`):
when one runs out of media (the stages fell behind real time: the user heard the voice stop), the machine held
fewer conversations than were open, and the learned ceiling drops to one below that count (never below one); when
one comes within a frame of running out (`GATEWAY_THIN_MEDIA_S`), the open conversations are all it holds, and the
ceiling drops to that count: the next is refused before anyone stutters. It rises again by one for every
`GATEWAY_CAPACITY_RELAX_S` without either, up to the configured ceiling. Past the ceiling a new or
resumed session is refused at its hello with a `busy` error and close code 1013 (try again later; the browser app
retries with backoff), instead of being admitted into a stuttering avatar. While full, `/readyz` answers 503 so a
load balancer sends new connections to another replica (the open ones stay); the metrics give the autoscaler
sessions against capacity.
"""

import logging
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)
ADMITTED = Gauge("avatar_gateway_sessions_admitted", "Conversations admitted and open now")
CAPACITY = Gauge("avatar_gateway_sessions_capacity",
                 "Conversations this gateway admits at once now: the configured ceiling, or what it learned it holds "
                 "(0: no limit)")
LOAD = Gauge("avatar_gateway_sessions_load",
             "Conversations admitted ÷ what admission takes now (the autoscaler's signal; 0 where there is no limit)")
REFUSED = Counter("avatar_gateway_sessions_refused_total", "Hellos refused with `busy` because the gateway was full")
LATE = Counter("avatar_gateway_late_media_total",
               "Replies whose media ran out while their listener played them (the stages fell behind real time)")
THIN = Counter("avatar_gateway_thin_media_total",
               "Replies whose media came within a moment of running out while their listener played them")

BUSY_CLOSE_CODE = 1013  # WebSocket "try again later"


class Admission:
    def __init__(self, max_sessions: int, learns: bool = True, relax_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic, predicted: Callable[[], int | None] = lambda: None):
        """`predicted`: what the machine's measured load says it carries (`machine_load.py`), None: unknown."""
        self.max_sessions = max_sessions  # 0: no limit
        self._predicted = predicted
        self._learns = learns
        self._relax_s = relax_s
        self._clock = clock
        self._learned: int | None = None  # the ceiling late media taught, None: none
        self._learned_at = 0.0  # when it was last lowered or raised
        self.admitted = 0
        CAPACITY.set(max_sessions)

    @property
    def capacity(self) -> int:
        """How many conversations are admitted at once now (0: no limit)."""
        if self._learned is not None and self._clock() - self._learned_at >= self._relax_s:
            self._learned += 1  # a while without late media: try one more
            self._learned_at = self._clock()
            if self.max_sessions and self._learned >= self.max_sessions:
                self._learned = None
        limits = [n for n in (self.max_sessions or None, self._learned, self.predicted) if n is not None]
        return min(limits, default=0)

    @property
    def predicted(self) -> int | None:
        """What the machine's measured load says it carries (None: unknown, or not predicted)."""
        return self._predicted()

    @property
    def full(self) -> bool:
        capacity = self.publish()
        return bool(capacity) and self.admitted >= capacity

    def publish(self) -> int:
        """The capacity now, also in the metrics."""
        capacity = self.capacity
        CAPACITY.set(capacity)
        LOAD.set(self.admitted / capacity if capacity else 0.0)
        return capacity

    def admit(self) -> bool:
        if self.full:
            REFUSED.inc()
            return False
        self.admitted += 1
        ADMITTED.set(self.admitted)
        self.publish()
        return True

    def release(self) -> None:
        self.admitted -= 1
        ADMITTED.set(self.admitted)
        self.publish()

    def ran_late(self) -> None:
        """An admitted reply's media ran out while its listener played it: the open conversations were more than
        this machine holds in real time."""
        LATE.inc()
        self._learn(max(1, self.admitted - 1), "media ran late")

    def ran_thin(self) -> None:
        """An admitted reply's media came within a moment of running out: the open conversations are as many as
        this machine holds in real time."""
        THIN.inc()
        self._learn(max(1, self.admitted), "media came close to running late")

    def _learn(self, held: int, why: str) -> None:
        if not self._learns:
            return
        if self._learned is None or held < self._learned:
            log.warning("%s with %d conversations open: admitting %d at most for now", why, self.admitted, held)
            self._learned = held
        self._learned_at = self._clock()  # again: the ceiling waits a whole while before it rises
        self.publish()
