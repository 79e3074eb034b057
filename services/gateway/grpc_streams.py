"""Bidirectional gRPC calls driven with explicit writes, so a server's early refusal keeps its real status.

Handing grpc.aio a request iterator loses the server's status when the server ends the call (say, NOT_FOUND
for an unknown model) while the client is still writing: the failed write surfaces as INTERNAL. Here writes
that fail because the call is over are dropped, and reading the responses raises the server's own status.
"""

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
from prometheus_client import Gauge

OPEN_STREAMS = Gauge("avatar_gateway_grpc_streams_open", "streaming calls to the stages open now", ["method"])


async def bidi(method: Callable[..., grpc.aio.StreamStreamCall], requests: AsyncIterator, **kwargs) -> AsyncIterator:
    call = method(**kwargs)
    gauge = OPEN_STREAMS.labels(_name(method))
    gauge.inc()

    async def write_all() -> None:
        try:
            async for request in requests:
                await call.write(request)
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            pass  # the call is over; its status comes with the responses

    writer = asyncio.create_task(write_all())
    try:
        async for response in call:
            yield response
    finally:
        writer.cancel()
        call.cancel()
        gauge.dec()


async def responses(call: grpc.aio.UnaryStreamCall, name: str) -> AsyncIterator:
    """A server-streaming call's responses, counted among the open streams while they flow."""
    gauge = OPEN_STREAMS.labels(name)
    gauge.inc()
    try:
        async for response in call:
            yield response
    finally:
        call.cancel()
        gauge.dec()


def _name(method) -> str:
    return getattr(method, "_method", b"").decode().rsplit("/", 1)[-1] or "stream"
