"""One interceptor for every service: error mapping, readiness gate, admission control and RPC metrics."""

import asyncio
import logging
import time
from collections.abc import Callable

import grpc
from opentelemetry import trace

from core.errors import AvatarError, NotReady, Overloaded
from services.common.grpc_errors import status_code
from services.common import metrics
from services.common.tracing import incoming_context, tag_meta

log = logging.getLogger(__name__)


_DRAIN_S = 1.0
_tracer = trace.get_tracer("avatar.services")


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
    - counts RPCs by code, times them and their first response;
    - traces each RPC as a span, a child of the caller's, tagged with the request's session and turn ids.
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
        parent = incoming_context(handler_call_details.invocation_metadata)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary, parent),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream, parent),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(method, handler.stream_stream, parent),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _admit(self) -> None:
        if not self._is_ready():
            raise NotReady("the model is not loaded yet; retry when the health check reports SERVING")
        if self._in_flight >= self._max_streams:
            raise Overloaded(f"server busy: {self._in_flight} streams in flight (limit {self._max_streams})")

    def _wrap_unary(self, method: str, behavior, parent):
        async def call(request, context):
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            span = _server_span(method, parent)
            tag_meta(span, request)
            try:
                self._admit()
                return await behavior(request, context)
            except AvatarError as err:
                code = status_code(err)
                await context.abort(code, str(err))
            except (asyncio.CancelledError, grpc.aio.AbortError):
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as err:  # noqa: BLE001 - the one place unexpected errors become INTERNAL
                code = grpc.StatusCode.INTERNAL
                log.exception("unexpected error in %s", method)
                await context.abort(code, f"internal error: {type(err).__name__}: {err}")
            finally:
                _end(span, code)
                metrics.RPC_TOTAL.labels(method, code.name).inc()
                metrics.RPC_DURATION.labels(method).observe(time.perf_counter() - started)

        return call

    def _wrap_stream(self, method: str, behavior, parent):
        async def call(request_or_iterator, context):
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            first = True
            admitted = False
            span = _server_span(method, parent)
            requests = request_or_iterator
            if hasattr(request_or_iterator, "__aiter__"):
                requests = _tagging(span, request_or_iterator)
            else:
                tag_meta(span, request_or_iterator)
            try:
                self._admit()
                admitted = True
                self._in_flight += 1
                metrics.STREAMS_IN_FLIGHT.inc()
                async for response in behavior(requests, context):
                    if first:
                        metrics.FIRST_RESULT.labels(method).observe(time.perf_counter() - started)
                        span.add_event("first_result")
                        first = False
                    yield response
            except AvatarError as err:
                code = status_code(err)
                await _drain(request_or_iterator)
                await context.abort(code, str(err))
            except (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit):
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as err:  # noqa: BLE001 - the one place unexpected errors become INTERNAL
                code = grpc.StatusCode.INTERNAL
                log.exception("unexpected error in %s", method)
                await context.abort(code, f"internal error: {type(err).__name__}: {err}")
            finally:
                _end(span, code)
                if admitted:
                    self._in_flight -= 1
                    metrics.STREAMS_IN_FLIGHT.dec()
                metrics.RPC_TOTAL.labels(method, code.name).inc()
                metrics.RPC_DURATION.labels(method).observe(time.perf_counter() - started)

        return call


def _server_span(method: str, parent) -> trace.Span:
    """This RPC's span (named after the method), a child of the caller's span."""
    return _tracer.start_span(method.rsplit("/", 1)[-1], context=parent, kind=trace.SpanKind.SERVER)


async def _tagging(span, requests):
    """The request stream, tagging the span with the first message's session and turn ids."""
    first = True
    async for request in requests:
        if first:
            tag_meta(span, request)
            first = False
        yield request


def _end(span, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
        span.set_status(trace.StatusCode.ERROR, code.name)
    span.end()
