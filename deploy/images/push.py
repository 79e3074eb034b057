"""Pushes the images `make images` built to a registry, named as the Helm chart expects them:
`python3 -m deploy.images.push REGISTRY [TAG]` (`make push REGISTRY=reg.example.org/team TAG=1.2.3`).

Each `avatar-<service>` goes to `<REGISTRY>/avatar-<service>:<TAG>` (TAG: the commit, when not given), and its CUDA
build, where one was made (`avatar-<service>:cuda`), to `<REGISTRY>/avatar-<service>:cuda` (the chart's
values-gpu.yaml). Log in first (`docker login` / `podman login`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from deploy.images.build import SERVICES, choose_engine, log, run


def pushes(registry: str, tag: str, present: set[str]) -> list[tuple[str, str]]:
    """(local image, remote name) for every image built here."""
    registry = registry.rstrip("/")
    out = []
    for service in SERVICES:
        local = f"avatar-{service}"
        for source, remote_tag in ((f"{local}:latest", tag), (f"{local}:cuda", "cuda")):
            if source in present:
                out.append((source, f"{registry}/{local}:{remote_tag}"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("registry", help="e.g. reg.example.org/team")
    parser.add_argument("tag", nargs="?", default="")
    args = parser.parse_args()
    tag = args.tag or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip() or "latest"
    engine = choose_engine()
    listed = run(engine, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    present = {name.removeprefix("localhost/") for name in listed}
    planned = pushes(args.registry, tag, present)
    if not planned:
        log("no avatar-* images here: run `make images` first")
        return 1
    for source, remote in planned:
        log(f"{source} -> {remote}")
        for step in ([engine, "tag", source, remote], [engine, "push", remote]):
            if subprocess.call(step) != 0:
                return 1
    log(f"pushed; install with: helm install avatar deploy/helm/avatar --set image.registry={args.registry} "
        f"--set image.tag={tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
