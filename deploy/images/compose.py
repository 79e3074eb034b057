"""Runs compose on the images `make images` built: `python3 -m deploy.images.compose [compose args]` (`make up`).

Docker Compose where a Docker daemon answers, else podman-compose (installed in its own small virtual
environment); the base images the build chose (var/images/bases.env) are passed on, so an offline site's
stand-ins are used for the build args and the redis service.
"""

from __future__ import annotations

import os
import subprocess
import sys

from deploy.images.build import OUT, bases_env, choose_engine


def compose_command(engine: str) -> list[str]:
    """`docker compose` with Docker; with Podman, podman-compose from its own small virtual environment."""
    if engine == "docker":
        return ["docker", "compose"]
    venv = OUT / "compose-venv"
    tool = venv / "bin" / "podman-compose"
    if not tool.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "podman-compose==1.6.0"], check=True)
    return [str(tool)]


def main() -> int:
    engine = choose_engine()
    args = sys.argv[1:] or ["up"]
    return subprocess.call([*compose_command(engine), *args], env={**os.environ, **bases_env()})


if __name__ == "__main__":
    sys.exit(main())
