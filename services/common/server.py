"""The lifecycle every service shares: health, reflection, metrics, load-then-serve, drain on SIGTERM."""

import asyncio
import faulthandler
import logging
import signal
import sys
import threading
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from services.common import metrics
from services.common.cpu_priority import lower_priority
from services.common.interceptor import ErrorInterceptor
from services.common.logs import setup_logging
from services.common.settings import ServiceSettings
from services.common.tracing import setup_tracing, shutdown_tracing

log = logging.getLogger(__name__)


class Stage(Protocol):
    """What a service gives the shared server: its gRPC service and a way to load its model."""

    service_name: str  # full gRPC name, e.g. "avatar.asr.v1.AsrService"

    def add_to_server(self, server: grpc.aio.Server) -> None: ...

    def load(self) -> None:
        """Load weights and run one warm-up inference. Blocking; runs in a worker thread. Raise if impossible."""


async def serve(stage: Stage, settings: ServiceSettings) -> bool:
    """Serve `stage` until SIGTERM/SIGINT. Reports NOT_SERVING until `stage.load()` has returned.

    Returns False when the model could not be loaded: the process then exits non-zero, so that its supervisor
    (compose, Kubernetes, `make run`) restarts it or shows the failure, instead of it staying NOT_SERVING forever.
    """
    ready = threading.Event()
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor(ready.is_set, settings.max_concurrent_streams)],
        options=[
            # Leave room above the per-chunk limit so the service can answer an oversized chunk itself,
            # with INVALID_ARGUMENT and a message, instead of the transport's bare RESOURCE_EXHAUSTED.
            ("grpc.max_receive_message_length", settings.max_message_bytes * 4),
            ("grpc.max_send_message_length", settings.max_message_bytes * 4),
            # Clients reconnect (and re-resolve, seeing new replicas) every few minutes; open streams may finish.
            ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_s * 1000)),
            # Accept the gateway's keepalive pings (every 30 s) instead of answering them with GOAWAY.
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    stage.add_to_server(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", stage.service_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (stage.service_name, reflection.SERVICE_NAME, health.SERVICE_NAME), server
    )
    address = f"{settings.host}:{settings.port}"
    server.add_insecure_port(address)
    await server.start()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
    log.info("%s listening on %s (metrics on :%s)", stage.service_name, address, settings.metrics_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: every thread's stack into the log

    loaded = True

    async def load_model() -> None:
        nonlocal loaded
        try:
            await asyncio.to_thread(stage.load)
        except Exception:
            log.exception("%s could not load its model; exiting", stage.service_name)
            loaded = False
            stop.set()
            return
        ready.set()
        metrics.MODEL_READY.set(1)
        for name in ("", stage.service_name):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("%s is SERVING", stage.service_name)

    loader = asyncio.create_task(load_model())
    await stop.wait()
    log.info("draining for up to %.1f s", settings.shutdown_grace_s)
    await health_servicer.enter_graceful_shutdown()
    loader.cancel()
    await server.stop(settings.shutdown_grace_s if loaded else 0)
    return loaded


def run(stage_factory, settings: ServiceSettings) -> None:
    """Entry point of `python -m services.<stage>`."""
    setup_logging(stage_factory.__name__, settings.log_level, settings.log_json)
    settings.log_non_defaults()
    lower_priority(settings.nice)
    setup_tracing(stage_factory.service_name)
    try:
        loaded = asyncio.run(serve(stage_factory(settings), settings))
    finally:
        shutdown_tracing()
    if not loaded:
        sys.exit(1)
