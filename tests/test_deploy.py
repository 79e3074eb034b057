"""Deployment files, checked offline: compose schema, Dockerfile lint, Kubernetes schemas, entrypoints."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonpatch
import pytest
import yaml

from services.runner.topology import SERVICES, command

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)


def test_compose_files_match_the_compose_schema():
    result = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                 "docker-compose.yml", "docker-compose.gpu.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_every_service_with_health_gating_and_auth():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {s.name for s in SERVICES} | {"redis"} <= set(services)
    gateway = services["gateway"]
    assert all(cond == {"condition": "service_healthy"} for cond in gateway["depends_on"].values())
    assert "GATEWAY_AUTH_TOKEN" in gateway["environment"]
    assert services["vllm"]["profiles"] == ["vllm"]


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_dockerfile_lints_clean_and_starts_what_the_local_runner_starts(spec):
    dockerfile = ROOT / "services" / spec.name / "Dockerfile"
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    result = run(hadolint, "--failure-threshold", "info", str(dockerfile))
    assert result.returncode == 0, result.stdout
    text = dockerfile.read_text()
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", text, re.M)[-1])
    assert cmd == command(spec, "python")
    assert re.search(r"^USER 10001$", text, re.M), "images run as a non-root user"
    assert "HEALTHCHECK" in text and f'"services.common.healthcheck", "{spec.name}"' in text


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_manifests_match_the_kubernetes_schemas():
    manifests = sorted(p for p in (K8S / "base").glob("*.yaml") if p.name != "kustomization.yaml")
    result = run(str(BIN / "kubernetes-validate"), "--strict", "--quiet", *map(str, manifests))
    assert result.returncode == 0, result.stdout + result.stderr
    listed = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in manifests)


def test_every_stage_scales_alone_with_grpc_probes():
    for spec in SERVICES:
        kinds = {d["kind"]: d for d in _documents(K8S / "base" / f"{spec.name}.yaml")}
        assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(kinds)
        if spec.grpc:
            container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
            assert container["startupProbe"]["grpc"]["port"] == spec.port
            assert container["readinessProbe"]["grpc"]["port"] == spec.port
            assert kinds["Service"]["spec"]["clusterIP"] == "None"  # headless: the gateway balances per pod


def test_gpu_overlay_patch_applies_to_the_stages(tmp_path):
    overlay = yaml.safe_load((K8S / "overlays" / "gpu" / "kustomization.yaml").read_text())
    ops = yaml.safe_load((K8S / "overlays" / "gpu" / "gpu-stage.yaml").read_text())
    target = re.compile(overlay["patches"][0]["target"]["name"])
    patched = []
    for spec in SERVICES:
        deployment = next(d for d in _documents(K8S / "base" / f"{spec.name}.yaml") if d["kind"] == "Deployment")
        if target.fullmatch(spec.name):
            deployment = jsonpatch.apply_patch(deployment, ops)
            path = tmp_path / f"{spec.name}.yaml"
            path.write_text(yaml.safe_dump(deployment))
            patched.append(str(path))
            assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert len(patched) == 3
    result = run(str(BIN / "kubernetes-validate"), "--strict", "--quiet", *patched)
    assert result.returncode == 0, result.stdout + result.stderr
