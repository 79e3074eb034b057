"""The stack from the real docker-compose.yml, on the images `make images` built: up, health, kill, down."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field

from deploy.images.build import ROOT, SERVICES, bases_env, choose_engine
from deploy.images.compose import compose_command
from services.runner.redis_server import free_port

HEALTHY_WITHIN_S = 420  # five models loading at once on two cores


@dataclass
class ComposeStack:
    engine: str = field(default_factory=choose_engine)
    project: str = field(default_factory=lambda: f"avatar-test-{os.getpid()}")
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    redis_password: str = field(default_factory=lambda: secrets.token_hex(12))
    port: int = field(default_factory=free_port)

    def env(self) -> dict[str, str]:
        return {**os.environ, **bases_env(), "GATEWAY_AUTH_TOKEN": self.token, "REDIS_PASSWORD": self.redis_password,
                "GATEWAY_PUBLISH": f"127.0.0.1:{self.port}", "WORKER_STEPS": "3", "WORKER_SENTENCES": "3"}

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        command = [*compose_command(self.engine), "-p", self.project, "-f", "docker-compose.yml", *args]
        return subprocess.run(command, cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=timeout)

    def engine_run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=120)

    def containers(self) -> dict[str, str]:
        """service name -> container name, for every container of this project (running or not)."""
        result = self.engine_run("ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
                                 "--format", '{{.Names}} {{index .Labels "com.docker.compose.service"}}')
        pairs = (line.split() for line in result.stdout.splitlines() if line.strip())
        return {service: name for name, service in pairs}

    def up(self) -> None:
        result = self.compose("up", "-d", "--no-build")
        if result.returncode != 0:
            raise RuntimeError(f"compose up failed:\n{result.stdout}\n{result.stderr}")

    def healthy(self, container: str) -> bool:
        """Runs the image's HEALTHCHECK now (Podman without systemd runs none by itself); Docker reports its own."""
        if self.engine == "podman":
            return self.engine_run("healthcheck", "run", container).returncode == 0
        state = self.engine_run("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()
        return state == "healthy"

    def running(self, container: str) -> bool:
        return self.engine_run("inspect", "--format", "{{.State.Running}}", container).stdout.strip() == "true"

    def restarts(self, container: str) -> int:
        count = self.engine_run("inspect", "--format", "{{.RestartCount}}", container).stdout.strip()
        return int(count) if count.isdigit() else 0

    def wait_healthy(self, services=(*SERVICES, "redis"), timeout: float = HEALTHY_WITHIN_S) -> dict[str, float]:
        """Seconds from now until each service's health check passed; raises with its logs when one cannot."""
        started = time.monotonic()
        ready: dict[str, float] = {}
        while len(ready) < len(services):
            containers = self.containers()
            for service in services:
                if service in ready or service not in containers:
                    continue
                if self.healthy(containers[service]):
                    ready[service] = time.monotonic() - started
                elif self.restarts(containers[service]) >= 3:
                    raise RuntimeError(f"{service} keeps restarting\n" + self.logs(service))
            if time.monotonic() - started > timeout:
                waiting = [s for s in services if s not in ready]
                raise TimeoutError(f"not healthy after {timeout:.0f} s: {waiting}\n" + self.logs(*waiting))
            time.sleep(2)
        return ready

    def logs(self, *services: str, tail: int = 40) -> str:
        containers = self.containers()
        out = []
        for service in services:
            name = containers.get(service)
            text = self.engine_run("logs", "--tail", str(tail), name) if name else None
            out.append(f"--- {service}\n" + (text.stdout + text.stderr if text else "(no container)"))
        return "\n".join(out)

    def kill(self, service: str) -> None:
        self.engine_run("kill", self.containers()[service])

    def start(self, service: str) -> None:
        self.engine_run("start", self.containers()[service])

    def down(self) -> None:
        self.compose("down", "--volumes", "--timeout", "10")
        leftover = self.containers()
        for name in leftover.values():
            self.engine_run("rm", "--force", name)
