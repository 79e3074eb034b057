"""Starts the services as separate processes on free ports, the way `make run` does."""

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from services.runner.health import SERVING, status
from services.runner.redis_server import free_port
from services.runner.topology import GATEWAY, SERVICES, ServiceSpec, command

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stack:
    redis_url: str
    specs: dict[str, ServiceSpec] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: Path = ROOT / "var" / "test-logs"
    avatars_dir: Path = ROOT / "var" / "test-avatars"
    extra_env: dict = field(default_factory=dict)

    def start(self, names=None) -> "Stack":
        self.logs.mkdir(parents=True, exist_ok=True)
        self.avatars_dir.mkdir(parents=True, exist_ok=True)
        chosen = [s for s in SERVICES if names is None or s.name in names]
        for spec in chosen:
            port = free_port()
            metrics_port = port if spec.metrics_port == spec.port else free_port()
            self.specs[spec.name] = replace(spec, port=port, metrics_port=metrics_port)
        for spec in self.specs.values():
            self.start_one(spec.name)
        return self

    def env(self) -> dict:
        # The gateway's learned and predicted capacity stay off unless asked for: tests and benches open sessions back
        # to back and make replies late on purpose; each is tested on a gateway of its own (test_gateway_ws.py).
        env = {**os.environ, "REDIS_URL": self.redis_url, "PYTHONUNBUFFERED": "1",
               "AVATARS_DIR": str(self.avatars_dir), "GATEWAY_LEARN_CAPACITY": "false",
               "GATEWAY_PREDICT_CAPACITY": "false", **self.extra_env}
        for spec in self.specs.values():
            env[f"{spec.env_prefix}PORT"] = str(spec.port)
            if spec.metrics_port != spec.port:
                env[f"{spec.env_prefix}METRICS_PORT"] = str(spec.metrics_port)
            if spec.grpc:
                env[f"GATEWAY_{spec.name.upper()}_ADDRESS"] = f"127.0.0.1:{spec.port}"
        return env

    def start_one(self, name: str) -> None:
        spec = self.specs[name]
        log = open(self.logs / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            command(spec, sys.executable), cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )

    def wait(self, name: str, want: str = SERVING, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        last = "UNREACHABLE"
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited: see {self.logs / (name + '.log')}")
            last = status(self.specs[name])
            if last == want:
                return last
            time.sleep(0.2)
        return last

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.specs[name].port}"

    def ops(self, name: str = "gateway") -> str:
        """A service's metrics port as a URL (the gateway's: /metrics and /readyz with its details)."""
        return f"http://127.0.0.1:{self.specs[name].metrics_port}"

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.kill()
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


class ExtraGateway:
    """Another gateway process on the shared stack's stages and Redis (a second replica, or a restarted one)."""

    def __init__(self, stack: "Stack", port: int | None = None, env: dict | None = None):
        self.port = port or free_port()
        self.metrics_port = free_port()
        spec = replace(GATEWAY, port=self.port, metrics_port=self.metrics_port)
        self.spec = spec
        log = open(stack.logs / f"gateway-{self.port}.log", "ab")
        self.process = subprocess.Popen(command(spec, sys.executable), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        env={**stack.env(), "GATEWAY_PORT": str(self.port),
                                             "GATEWAY_METRICS_PORT": str(self.metrics_port), **(env or {})})
        deadline = time.monotonic() + 60
        while status(spec) != SERVING:
            assert self.process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def ops(self) -> str:
        """The operators' port: /metrics, /readyz with its details."""
        return f"http://127.0.0.1:{self.metrics_port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
