"""What REST work a client may cost: uploads read no further than their limit (`read_upload`), a rate per client (a token bucket: `GATEWAY_REST_RATE_PER_MIN`, bursts up to
`GATEWAY_REST_BURST`) answered with 429 and `Retry-After`, and a share of the same capacity that guards
conversations (`admission.py`): a REST call that needs the stages holds one of its places while it runs, so
REST calls cannot starve the conversations, and are refused with 429 `busy` while the gateway is full."""

import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from fastapi import Depends, HTTPException, Request, UploadFile

from services.gateway.access import ANONYMOUS, SHARED, Grant, Principal
from services.gateway.rest_auth import requires

_CLIENTS_KEPT = 10_000  # buckets remembered; the least recently seen are forgotten (a full bucket again)
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # a media file sent to a REST call


async def read_upload(upload: UploadFile, limit: int, what: str) -> bytes:
    """The uploaded file's bytes, or 413 when it holds more than `limit` (read one byte past it, never cut short
    and never read whole)."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"{what} exceeds {limit} bytes")
    return data


class RateLimiter:
    def __init__(self, per_min: float, burst: int, clock=time.monotonic):
        self._rate = per_min / 60
        self._burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client: (tokens, when)

    def take(self, client: str) -> float:
        """0 when `client` may go on now, else the seconds until it may."""
        now = self._clock()
        tokens, when = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + (now - when) * self._rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self._rate
        self._buckets[client] = (tokens - 1 if not wait else tokens, now)
        while len(self._buckets) > _CLIENTS_KEPT:
            self._buckets.popitem(last=False)
        return wait


def client_key(request: Request, principal: Principal) -> str:
    """A user where tokens name one; otherwise the client's address."""
    if principal not in (ANONYMOUS, SHARED):  # they name no one: everyone holds them
        return f"user:{principal.subject}"
    return f"address:{request.client.host if request.client else ''}"


def rate_limited(grant: Grant) -> Callable:
    """A route dependency for costly REST work that needs `grant`: refused with 429 and Retry-After past the
    client's rate."""

    async def limited(request: Request, principal: Principal = Depends(requires(grant))) -> None:
        wait = request.app.state.rest_rate.take(client_key(request, principal))
        if wait:
            raise HTTPException(429, f"too many requests; try again in {math.ceil(wait)} s",
                                headers={"Retry-After": str(math.ceil(wait))})

    return limited


@contextlib.asynccontextmanager
async def stage_place(request: Request) -> AsyncIterator[None]:
    """One of the gateway's places while a REST call works the stages; 429 busy while conversations fill them."""
    admission = request.app.state.admission
    if not admission.admit():
        raise HTTPException(429, "the avatar server is busy with conversations; try again in a moment",
                            headers={"Retry-After": "5"})
    try:
        yield
    finally:
        admission.release()
