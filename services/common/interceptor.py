"""One interceptor for every service: error mapping, readiness gate, admission control and RPC metrics."""

import asyncio
import logging
import time
from collections.abc import Callable

import grpc

from services.common import metrics
from services.common.errors import AvatarError, NotReady, Overloaded

log = logging.getLogger(__name__)


_DRAIN_S = 1.0


async def _drain(requests) -> None:
    """Read what a client is still sending (up to `_DRAIN_S`) before refusing its stream: a status sent while
    the client's writes were failing reached grpc.aio clients as INTERNAL instead of the real code."""
    if not hasattr(requests, "__aiter__"):
        return

    async def consume() -> None:
        async for _ in requests:
            pass

    try:
        await asyncio.wait_for(consume(), _DRAIN_S)
    except (TimeoutError, grpc.RpcError, grpc.aio.UsageError, StopAsyncIteration, RuntimeError):
        pass


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the handlers of the stage's own RPCs (`/avatar.` methods).

    - raises NotReady until `is_ready()` is true, Overloaded past `max_streams` concurrent calls;
    - turns an AvatarError into its gRPC code with the error's message, anything else into INTERNAL;
    - counts RPCs by code, times them and their first response.
    """

    def __init__(self, is_ready: Callable[[], bool], max_streams: int):
        self._is_ready = is_ready
        self._max_streams = max_streams
        self._in_flight = 0

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith("/avatar."):
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(method, handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _admit(self) -> None:
        if not self._is_ready():
            raise NotReady("the model is not loaded yet; retry when the health check reports SERVING")
        if self._in_flight >= self._max_streams:
            raise Overloaded(f"server busy: {self._in_flight} streams in flight (limit {self._max_streams})")

    def _wrap_unary(self, method: str, behavior):
        async def call(request, context):
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                self._admit()
                return await behavior(request, context)
            except AvatarError as err:
                code = err.code
                await context.abort(err.code, str(err))
            except (asyncio.CancelledError, grpc.aio.AbortError):
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as err:  # noqa: BLE001 - the one place unexpected errors become INTERNAL
                code = grpc.StatusCode.INTERNAL
                log.exception("unexpected error in %s", method)
                await context.abort(code, f"internal error: {type(err).__name__}: {err}")
            finally:
                metrics.RPC_TOTAL.labels(method, code.name).inc()
                metrics.RPC_DURATION.labels(method).observe(time.perf_counter() - started)

        return call

    def _wrap_stream(self, method: str, behavior):
        async def call(request_or_iterator, context):
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            first = True
            admitted = False
            try:
                self._admit()
                admitted = True
                self._in_flight += 1
                metrics.STREAMS_IN_FLIGHT.inc()
                async for response in behavior(request_or_iterator, context):
                    if first:
                        metrics.FIRST_RESULT.labels(method).observe(time.perf_counter() - started)
                        first = False
                    yield response
            except AvatarError as err:
                code = err.code
                await _drain(request_or_iterator)
                await context.abort(err.code, str(err))
            except (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit):
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as err:  # noqa: BLE001 - the one place unexpected errors become INTERNAL
                code = grpc.StatusCode.INTERNAL
                log.exception("unexpected error in %s", method)
                await context.abort(code, f"internal error: {type(err).__name__}: {err}")
            finally:
                if admitted:
                    self._in_flight -= 1
                    metrics.STREAMS_IN_FLIGHT.dec()
                metrics.RPC_TOTAL.labels(method, code.name).inc()
                metrics.RPC_DURATION.labels(method).observe(time.perf_counter() - started)

        return call
