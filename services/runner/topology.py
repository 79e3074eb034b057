"""The one place that names every service: its module, ports and how its process is started.

`make run`, the tests and the container images all start a service with `command(spec)`, so what runs locally
is exactly what runs in a container.
"""

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int
    metrics_port: int  # Prometheus /metrics (the worker's only port; the gateway's operators' port)
    grpc: bool  # gRPC stage (health over grpc.health.v1), or HTTP (GET /healthz)
    entry: str = ""  # the module run with python -m (services.<name> when empty)
    image_dir: str = ""  # the folder holding its Dockerfile (services/<name> when empty)

    @property
    def module(self) -> str:
        return self.entry or f"services.{self.name}"

    @property
    def dockerfile(self) -> str:
        return f"{self.image_dir or 'services/' + self.name}/Dockerfile"

    @property
    def env_prefix(self) -> str:
        return f"{self.name.upper()}_"


STAGES = (
    ServiceSpec("asr", 50051, 9101, grpc=True),
    ServiceSpec("llm", 50052, 9102, grpc=True),
    ServiceSpec("tts", 50053, 9103, grpc=True),
    ServiceSpec("sda", 50054, 9104, grpc=True),
)
GATEWAY = ServiceSpec("gateway", 8000, 9100, grpc=False)
# Makes avatars from photos for the gateway (jobs through Redis); its port serves Prometheus metrics.
WORKER = ServiceSpec("worker", 9105, 9105, grpc=False, entry="pipelines.avatar_worker", image_dir="pipelines")
SERVICES = (*STAGES, GATEWAY, WORKER)


def command(spec: ServiceSpec, python: str = sys.executable) -> list[str]:
    """The process command of a service; the container images use the same one (with their own python)."""
    return [python, "-m", spec.module]
