"""python -m services.runner — `make run`: every service as its own process, plus Redis if none is configured."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from services.runner.health import SERVING, status
from services.runner.redis_server import EmbeddedRedis
from services.runner.topology import GATEWAY, SERVICES, command

console = Console()


def main() -> int:
    env = dict(os.environ)
    redis = None
    if not env.get("REDIS_URL"):
        redis = EmbeddedRedis(data_dir=Path("var/redis"))  # sessions outlive a restart of make run
        env["REDIS_URL"] = redis.url
        console.print(f"started redis-server at {redis.url} (data in var/redis)")
    processes = {spec.name: subprocess.Popen(command(spec), env=env) for spec in SERVICES}
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        waiting = {spec.name: spec for spec in SERVICES}
        deadline = time.monotonic() + float(env.get("RUN_STARTUP_TIMEOUT_S", "300"))
        with console.status("waiting for the services to load their models...") as progress:
            while waiting and not stopping and time.monotonic() < deadline:
                for name, spec in list(waiting.items()):
                    if processes[name].poll() is not None:
                        console.print(f"[red]{name} exited with code {processes[name].returncode}")
                        return 1
                    if status(spec) == SERVING:
                        console.print(f"[green]{name}[/] ready on port {spec.port}")
                        del waiting[name]
                progress.update(f"waiting for {', '.join(waiting)} to load their models...")
                time.sleep(0.5)
        for name in waiting:
            console.print(f"[yellow]{name}[/] is not SERVING yet (no model for this stage, or still loading)")
        console.print(f"\nOpen http://127.0.0.1:{GATEWAY.port}/ — Ctrl+C stops everything.")
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    console.print(f"[red]{name} exited with code {process.returncode}")
                    stopping = True
            time.sleep(0.5)
        return 0
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)  # the gateway drains for up to 20 s
            except subprocess.TimeoutExpired:
                process.kill()
        if redis:
            redis.stop()


if __name__ == "__main__":
    sys.exit(main())
