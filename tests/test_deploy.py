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


COMPOSE_FILES = ("docker-compose.yml", "docker-compose.gpu.yml", "docker-compose.vllm.yml")


def _compose(name: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_compose_files_match_the_compose_schema():
    result = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *COMPOSE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_every_service_with_health_gating_and_auth():
    services = _compose()["services"]
    assert {s.name for s in SERVICES} | {"redis"} <= set(services)
    gateway = services["gateway"]
    assert all(cond == {"condition": "service_healthy"} for cond in gateway["depends_on"].values())
    # the variable compose requires is the one .env.example documents, and .env reaches every service
    assert "GATEWAY_AUTH_TOKEN:?" in gateway["environment"]["GATEWAY_AUTH_TOKEN"]
    assert "GATEWAY_AUTH_TOKEN=" in (ROOT / ".env.example").read_text()
    # Redis wants a password, which the gateway and the worker send and no command line shows
    redis = services["redis"]
    assert "REDIS_PASSWORD:?" in redis["environment"]["REDIS_PASSWORD"] and "REDIS_PASSWORD=" in (ROOT / ".env.example").read_text()
    assert "requirepass" in redis["command"][-1] and "${REDIS_PASSWORD}" not in redis["command"][-1]
    for client in ("gateway", "worker"):
        assert services[client]["environment"]["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD}@redis:")
    assert all(services[s.name]["env_file"] == [{"path": ".env", "required": False}] for s in SERVICES)


def test_compose_publishes_only_the_gateway():
    services = _compose()["services"]
    assert [name for name, service in services.items() if service.get("ports")] == ["gateway"]


def test_gpu_override_gives_each_gpu_stage_its_own_gpu_and_tells_it_to_use_it():
    gpu = _compose("docker-compose.gpu.yml")["services"]
    expected_env = {"asr": ("ASR_DEVICE", "cuda"), "tts": ("TTS_USE_CUDA", "true"), "sda": ("SDA_DEVICE", "cuda")}
    for name, (key, value) in expected_env.items():
        service = gpu[name]
        assert service["environment"][key] == value
        assert service["build"]["args"]["DEVICE"] == "cuda" and service["image"] == f"avatar-{name}:cuda"
        device = service["deploy"]["resources"]["reservations"]["devices"][0]
        assert device["device_ids"] == [f"${{{name.upper()}_GPU:-0}}"] and "count" not in device
    vllm = _compose("docker-compose.vllm.yml")["services"]
    assert vllm["llm"]["depends_on"] == {"vllm": {"condition": "service_healthy"}}
    assert "--gpu-memory-utilization" in vllm["vllm"]["command"]


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_dockerfile_lints_clean_and_starts_what_the_local_runner_starts(spec):
    dockerfile = ROOT / spec.dockerfile
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    result = run(hadolint, "--failure-threshold", "info", str(dockerfile))
    assert result.returncode == 0, result.stdout
    text = dockerfile.read_text()
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", text, re.M)[-1])
    assert cmd == command(spec, "python")
    assert re.search(r"^USER 10001$", text, re.M), "images run as a non-root user"
    assert "HEALTHCHECK" in text and f'"services.runner.healthcheck", "{spec.name}"' in text


def test_the_build_context_leaves_out_nested_builds_and_secrets():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"**/node_modules", "**/dist", "**/.venv", ".env", ".git"} <= ignored
    assert "wheels" not in ignored, "the CPU torch wheel is installed from the build context"


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_manifests_match_the_kubernetes_schemas():
    manifests = sorted(p for p in (K8S / "base").glob("*.yaml") if p.name != "kustomization.yaml")
    result = run(str(BIN / "kubernetes-validate"), "--strict", "--quiet", *map(str, manifests))
    assert result.returncode == 0, result.stdout + result.stderr
    listed = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in manifests)


def _deployments() -> dict[str, dict]:
    docs = (d for p in (K8S / "base").glob("*.yaml") for d in _documents(p))
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}


def test_pods_run_restricted_and_autoscaled_deployments_leave_replicas_to_the_autoscaler():
    for name, deployment in _deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["fsGroup"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        if name != "redis":
            assert "replicas" not in deployment["spec"], f"{name}: replicas beside an autoscaler"


def test_only_the_gateway_reaches_the_stages_and_only_the_gateway_and_worker_reach_redis():
    policies = _documents(K8S / "base" / "network.yaml")
    allowed = {"grpc": {"gateway"}, "redis": {"gateway", "worker"}}
    for policy in policies:
        for rule in (rule for rule in policy["spec"]["ingress"] if "from" in rule):
            sources = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in rule["from"]}
            assert all(sources <= allowed[port["port"]] for port in rule["ports"]), rule
    selected = {v for p in policies for e in p["spec"]["podSelector"].get("matchExpressions", []) for v in e["values"]}
    selected |= {p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") for p in policies}
    assert {"asr", "llm", "tts", "sda", "redis"} <= selected


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
    scaling = yaml.safe_load((K8S / "overlays" / "gpu" / "gpu-autoscaling.yaml").read_text())
    hpa = jsonpatch.apply_patch(next(d for d in _documents(K8S / "base" / "sda.yaml")
                                     if d["kind"] == "HorizontalPodAutoscaler"), scaling)
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "avatar_streams_in_flight"
    result = run(str(BIN / "kubernetes-validate"), "--strict", "--quiet", *patched)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_setting_names_the_avatars_folder_for_every_process_that_reads_or_writes_avatars(monkeypatch):
    from pipelines.avatar_worker import WorkerSettings
    from services.gateway.config import GatewaySettings
    from services.llm.config import LlmSettings
    from services.sda.config import SdaSettings
    from services.tts.config import TtsSettings

    monkeypatch.setenv("AVATARS_DIR", "/srv/avatars")
    assert {s().avatars_dir for s in (GatewaySettings, LlmSettings, SdaSettings, TtsSettings, WorkerSettings)} == {
        "/srv/avatars"}
    compose = _compose()["services"]
    assert all(compose[name]["environment"]["AVATARS_DIR"] == "/data/avatars" for name in ("gateway", "llm", "sda", "tts"))
