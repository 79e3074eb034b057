"""Draining: how the gateway stops without dropping a conversation.

On SIGTERM (a deploy, a scale-down, Ctrl+C) the gateway first drains: it stops taking sessions (new sockets are
told to reconnect, `/readyz` answers 503 so a load balancer stops sending them), lets each open session finish the
reply it is making, up to `GATEWAY_DRAIN_GRACE_S`, then tells it to reconnect (a `reconnect` event, close code
1012) — the client resumes its session on another replica, or on this one once it is back. Only then, and not
before `GATEWAY_DRAIN_NOTICE_S` has passed since a SIGTERM (load balancers see the 503 meanwhile), does uvicorn's own
shutdown run. A second signal stops at once.
"""

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn
from prometheus_client import Gauge

log = logging.getLogger(__name__)

DRAINING = Gauge("avatar_gateway_draining", "1 while the gateway drains before it stops")
RESTART_CLOSE_CODE = 1012  # WebSocket "service restart": reconnect


def reconnect_event(reason: str) -> dict:
    return {"type": "reconnect", "reason": reason}


class Drain:
    """The open sessions, and whether the gateway is draining."""

    def __init__(self):
        self.draining = False
        self._sessions: set[Callable[[float], Awaitable[None]]] = set()

    def track(self, finish: Callable[[float], Awaitable[None]]) -> None:
        """`finish(grace_s)` ends one session gracefully; it is called when the gateway drains."""
        self._sessions.add(finish)

    def forget(self, finish: Callable[[float], Awaitable[None]]) -> None:
        self._sessions.discard(finish)

    async def drain(self, grace_s: float) -> None:
        self.draining = True
        DRAINING.set(1)
        log.info("draining: %d open session(s) finish their replies (up to %.0f s), then reconnect elsewhere",
                 len(self._sessions), grace_s)
        if self._sessions:
            await asyncio.wait([asyncio.ensure_future(finish(grace_s)) for finish in list(self._sessions)],
                               timeout=grace_s + 2)


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain before its shutdown on the first SIGTERM or SIGINT."""

    def __init__(self, config: uvicorn.Config, drain: Drain, grace_s: float, notice_s: float):
        super().__init__(config)
        self._drain = drain
        self._grace_s = grace_s
        self._notice_s = notice_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Future | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is not None or self._loop is None or sig not in (signal.SIGTERM, signal.SIGINT):
            super().handle_exit(sig, frame)  # a second signal: stop now
            return
        self._draining = asyncio.run_coroutine_threadsafe(self._drain_then_exit(sig, frame), self._loop)

    async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        notice = asyncio.sleep(self._notice_s if sig == signal.SIGTERM else 0)
        try:
            await asyncio.gather(self._drain.drain(self._grace_s), notice)
        finally:
            super().handle_exit(sig, frame)
