"""How many conversations one gateway (and the stages behind it) takes at once.

A box has room for a few conversations before every one of them slows down (docs/benchmarks.md, concurrency).
Past `GATEWAY_MAX_SESSIONS` a new or resumed session is refused at its hello with a `busy` error and close code
1013 (try again later; the browser app retries with backoff), instead of being admitted into seconds of
silence. While full, `/readyz` answers 503 so a load balancer sends new connections to another replica (the open
ones stay); the metrics give the autoscaler sessions against capacity.
"""

from prometheus_client import Counter, Gauge

ADMITTED = Gauge("avatar_gateway_sessions_admitted", "Conversations admitted and open now")
CAPACITY = Gauge("avatar_gateway_sessions_capacity", "Conversations this gateway admits at once (0: no limit)")
REFUSED = Counter("avatar_gateway_sessions_refused_total", "Hellos refused with `busy` because the gateway was full")

BUSY_CLOSE_CODE = 1013  # WebSocket "try again later"


class Admission:
    def __init__(self, max_sessions: int):
        self.max_sessions = max_sessions  # 0: no limit
        self.admitted = 0
        CAPACITY.set(max_sessions)

    @property
    def full(self) -> bool:
        return bool(self.max_sessions) and self.admitted >= self.max_sessions

    def admit(self) -> bool:
        if self.full:
            REFUSED.inc()
            return False
        self.admitted += 1
        ADMITTED.set(self.admitted)
        return True

    def release(self) -> None:
        self.admitted -= 1
        ADMITTED.set(self.admitted)
