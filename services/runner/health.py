"""Readiness probes for the local runner and the tests: grpc.health.v1 for stages, /healthz for the gateway."""

import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runner.topology import ServiceSpec

SERVING = "SERVING"


def status(spec: ServiceSpec, host: str = "127.0.0.1", timeout: float = 1.0) -> str:
    """SERVING, NOT_SERVING, or UNREACHABLE."""
    if not spec.grpc:
        try:
            with urllib.request.urlopen(f"http://{host}:{spec.port}/healthz", timeout=timeout) as reply:
                return SERVING if reply.status == 200 else "NOT_SERVING"
        except OSError:
            return "UNREACHABLE"
    with grpc.insecure_channel(f"{host}:{spec.port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
