"""Builds the service images (the five of a conversation, and the avatar worker) with Docker or Podman: `make images` (python3 -m deploy.images.build).

- Engine: Docker when its daemon answers, else Podman (set up by deploy/images/setup_podman.sh when missing);
  AVATAR_ENGINE=docker|podman chooses.
- Base images: the ones the Dockerfiles and docker-compose.yml name, pulled when a registry answers; where none
  does, stand-ins built from Debian's packages (offline_bases.sh). What was chosen is written to
  var/images/bases.env (PYTHON_IMAGE, NODE_IMAGE, REDIS_IMAGE) for compose.
- The CPU torch wheel goes into wheels/, where the Dockerfiles install it from.
- Build time and size per image go to var/images/report.json; those of builds without the layer cache also to
  var/images/cold.json, which docs/deploy.md quotes (a cached rebuild says little about a fresh machine).

Standard library only: it runs before the project's virtual environment exists.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from services.runner.topology import SERVICES as TOPOLOGY

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OUT = ROOT / "var" / "images"
BASES_ENV = OUT / "bases.env"
SPECS = {spec.name: spec for spec in TOPOLOGY}
SERVICES = tuple(SPECS)
# name -> (the image the project names, the stand-in offline_bases.sh builds)
BASES = {
    "PYTHON_IMAGE": ("python:3.11-slim-bookworm", "python"),
    "NODE_IMAGE": ("node:20-bookworm-slim", "node"),
    "REDIS_IMAGE": ("redis:7.2-alpine", "redis"),
}
TORCH_CPU = "torch==2.13.0+cpu"
# Podman's RUN steps use the host's network and trust store (a site with its own CA for the registries).
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def log(message: str) -> None:
    print(f"[images] {message}", flush=True)


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, text=True, capture_output=True, **kwargs)


def docker_answers() -> bool:
    return shutil.which("docker") is not None and run("docker", "info").returncode == 0


def choose_engine() -> str:
    wanted = os.environ.get("AVATAR_ENGINE", "")
    if wanted:
        return wanted
    if docker_answers():
        return "docker"
    log("no Docker daemon answers: Podman (set up where anything is missing)")
    subprocess.run([str(HERE / "setup_podman.sh")], check=True, stdout=subprocess.DEVNULL)
    return "podman"


DNS_CHECK = "avatar-dns-check"
NO_NAMES = """containers on one {engine} network cannot find each other by name ({detail}).
The compose services reach each other as redis, asr, llm, tts and sda, so the stack would come up and fail.
With Podman on its CNI backend (Debian's Podman 4.x) names come from the dnsname plugin:
  apt-get install golang-github-containernetworking-plugin-dnsname   (deploy/images/setup_podman.sh does it)
With the netavark backend they come from aardvark-dns: apt-get install aardvark-dns."""


def check_name_resolution(engine: str, image: str) -> None:
    """Two throwaway containers on one network must resolve each other, or the build stops and says what is
    missing: the compose stack depends on it, and a health check alone would not show it."""
    def cleanup() -> None:
        run(engine, "rm", "-f", f"{DNS_CHECK}-peer")
        run(engine, "network", "rm", "-f", DNS_CHECK)

    cleanup()
    try:
        created = run(engine, "network", "create", DNS_CHECK)
        if created.returncode != 0:
            raise SystemExit(NO_NAMES.format(engine=engine, detail=f"network create: {created.stderr.strip()}"))
        peer = run(engine, "run", "-d", "--network", DNS_CHECK, "--name", f"{DNS_CHECK}-peer", image,
                   "python3", "-c", "import time; time.sleep(120)")
        if peer.returncode != 0:
            raise SystemExit(f"could not start a container from {image}: {peer.stderr.strip()}")
        probe = run(engine, "run", "--rm", "--network", DNS_CHECK, image, "python3", "-c",
                    f"import socket; print(socket.gethostbyname('{DNS_CHECK}-peer'))", timeout=120)
        if probe.returncode != 0:
            detail = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
            raise SystemExit(NO_NAMES.format(engine=engine, detail=detail))
        log(f"name resolution between containers: ok ({DNS_CHECK}-peer -> {probe.stdout.strip()})")
    finally:
        cleanup()


def qualified(engine: str, image: str) -> str:
    """Podman does not guess a registry for a short name; Docker Hub is what the Dockerfiles mean."""
    if engine == "podman" and "/" not in image.split(":")[0]:
        return f"docker.io/library/{image}"
    return image


def resolve_bases(engine: str) -> dict[str, str]:
    """Each base image: present, else pulled, else a stand-in built from Debian's packages."""
    chosen = {}
    for name, (image, stand_in) in BASES.items():
        env_value = os.environ.get(name)
        if env_value:
            chosen[name] = env_value
        elif run(engine, "image", "inspect", qualified(engine, image)).returncode == 0:
            chosen[name] = image
        elif run(engine, "pull", qualified(engine, image)).returncode == 0:
            chosen[name] = image
        else:
            log(f"{image}: no registry answers; using a stand-in built from Debian packages")
            result = subprocess.run([str(HERE / "offline_bases.sh"), engine, stand_in],
                                    check=True, text=True, stdout=subprocess.PIPE)
            chosen[name] = result.stdout.strip().splitlines()[-1]
        log(f"{name}={chosen[name]}")
    OUT.mkdir(parents=True, exist_ok=True)
    BASES_ENV.write_text("".join(f"{k}={v}\n" for k, v in chosen.items()))
    return chosen


def bases_env() -> dict[str, str]:
    """The base images the last build chose (compose reads them for its build args and the redis image)."""
    lines = BASES_ENV.read_text().splitlines() if BASES_ENV.exists() else []
    return dict(line.split("=", 1) for line in lines if "=" in line)


def fetch_torch_wheel() -> None:
    wheels = ROOT / "wheels"
    if any(wheels.glob("torch-2.13.0+cpu-*.whl")):
        return
    log(f"fetching {TORCH_CPU} into wheels/")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--platform", f"manylinux_2_28_{platform.machine()}", "--python-version", "3.11",
         "--implementation", "cp", "--abi", "cp311", "--dest", str(wheels), TORCH_CPU],
        check=True,
    )


def build(engine: str, service: str, bases: dict[str, str], extra_args: list[str]) -> dict:
    tag = f"avatar-{service}"
    args = [engine, "build", "-f", SPECS[service].dockerfile, "-t", tag]
    if engine == "podman":
        args += ["--format", "docker", "--network", "host"]
        if HOST_CA.exists():
            args += ["--volume", f"{HOST_CA}:{HOST_CA}:ro"]
    for name in ("PYTHON_IMAGE", "NODE_IMAGE"):
        args += ["--build-arg", f"{name}={bases[name]}"]
    args += [*extra_args, "."]
    logfile = OUT / "logs" / f"{service}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    log(f"building {tag} (log: {logfile.relative_to(ROOT)})")
    started = time.monotonic()
    with logfile.open("w") as out:
        code = subprocess.run(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - started
    if code != 0:
        tail = logfile.read_text().splitlines()[-40:]
        raise SystemExit(f"building {tag} failed (exit {code}); last lines of {logfile}:\n" + "\n".join(tail))
    size = int(run(engine, "image", "inspect", "--format", "{{.Size}}", tag).stdout.strip() or 0)
    log(f"{tag}: {seconds:.0f} s, {size / 1e6:.0f} MB")
    return {"image": tag, "seconds": round(seconds, 1), "bytes": size}


DOCS = ROOT / "docs" / "deploy.md"
MARKS = ("<!-- images:start -->", "<!-- images:end -->")


def write_docs(report: dict) -> None:
    """The build time and size table in docs/deploy.md: each image's last build without the layer cache."""
    rows = ["| image | build time | layer cache | size | engine | built |", "|---|---|---|---|---|---|"]
    for service in SERVICES:
        if service in report:
            r = report[service]
            rows.append(f"| {r['image']} | {r['seconds']:.0f} s | {r.get('cache', 'layers')} | {r['bytes'] / 1e6:,.0f} MB "
                        f"| {r['engine']} | {r.get('date', '')} |")
    text = DOCS.read_text()
    head, rest = text.split(MARKS[0])
    _, tail = rest.split(MARKS[1])
    DOCS.write_text(head + MARKS[0] + "\n" + "\n".join(rows) + "\n" + MARKS[1] + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("services", nargs="*", help=f"some of {', '.join(SERVICES)} (default: all)")
    parser.add_argument("--build-arg", action="append", default=[], help="passed to every build, e.g. DEVICE=cuda")
    parser.add_argument("--no-cache", action="store_true", help="build every layer anew (a cold build's time)")
    parser.add_argument("--write-docs", action="store_true", help="put the times and sizes in docs/deploy.md")
    options = parser.parse_args()
    unknown = set(options.services) - set(SERVICES)
    if unknown:
        parser.error(f"unknown service(s) {', '.join(sorted(unknown))}; choose from {', '.join(SERVICES)}")
    engine = choose_engine()
    log(f"engine: {engine}")
    bases = resolve_bases(engine)
    check_name_resolution(engine, qualified(engine, bases["PYTHON_IMAGE"]))
    fetch_torch_wheel()
    extra = [a for value in options.build_arg for a in ("--build-arg", value)] + ["--no-cache"] * options.no_cache
    reports = {name: OUT / f"{name}.json" for name in ("report", "cold")}
    report, cold = (json.loads(path.read_text()) if path.exists() else {} for path in reports.values())
    for service in options.services or SERVICES:
        report[service] = build(engine, service, bases, extra) | {
            "engine": engine, "date": time.strftime("%Y-%m-%d"), "cache": "none" if options.no_cache else "layers"}
        if options.no_cache:
            cold[service] = report[service]
        reports["report"].write_text(json.dumps(report, indent=2) + "\n")
        reports["cold"].write_text(json.dumps(cold, indent=2) + "\n")
    if options.write_docs:
        write_docs(cold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
