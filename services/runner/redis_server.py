"""Starts a real redis-server for local runs and tests when no REDIS_URL is given."""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A redis-server process on loopback; stopped with `stop()`. With `data_dir` its data persist there
    (append-only file, written every second), so sessions outlive a restart; else they live in a temporary folder."""

    def __init__(self, port: int | None = None, data_dir: Path | None = None):
        self._binary = shutil.which("redis-server")
        if self._binary is None:
            raise RuntimeError("redis-server is not installed; run `make setup` (it installs Debian's redis-server)")
        self.port = port or free_port()
        self._temporary = None if data_dir else tempfile.TemporaryDirectory(prefix="avatar-redis-")
        self._data_dir = Path(data_dir) if data_dir else Path(self._temporary.name)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._persist = data_dir is not None
        self._start()

    def _start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self._persist else ["--appendonly", "no"]
        self._process = subprocess.Popen(
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self._data_dir),
             "--save", "", *persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while not redis_answers("127.0.0.1", self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def down(self) -> None:
        """Stops the server, keeping its port and data for `up()` (a restart, in two steps)."""
        self._process.terminate()
        self._process.wait(timeout=10)

    def up(self) -> None:
        self._start()

    def stop(self) -> None:
        self.down()
        if self._temporary is not None:
            self._temporary.cleanup()
