"""Deployment files, checked offline: compose schema, Dockerfile lint, the Helm chart rendered and checked against
the Kubernetes schemas, entrypoints."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from services.runner.topology import SERVICES, command
from tests.helm_chart import documents, render

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
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


CHART_VALUES = {
    "cpu": ((), ()),
    "gpu": (("values-gpu.yaml",), ()),
    "exposed": ((), ("ingress.enabled=true,ingress.host=avatar.example.org,ingress.tlsSecret=avatar-tls",
                     "serviceMonitor.enabled=true,namespace.create=true,gateway.autoscaling.sessionLoad=0.7",
                     "secrets.existingSecret=ops-avatar,secrets.c2paSecret=ops-c2pa,storage.storageClass=nfs",
                     "redis.enabled=false,redis.externalUrl=rediss://redis.ops:6380/0,image.registry=reg.example.org/team",
                     "image.tag=1.2.3")),
}


def _chart(kind: str) -> list[dict]:
    files, sets = CHART_VALUES[kind]
    return documents(*files, sets=sets)


def _of(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"].removeprefix("avatar-"): d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("kind", CHART_VALUES)
def test_the_helm_chart_renders_manifests_that_match_the_kubernetes_schemas(kind, tmp_path):
    docs = _chart(kind)
    custom = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]  # a CRD: no schema here
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all([d for d in docs if d not in custom]))
    result = run(str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    for monitor in custom:
        assert monitor["kind"] == "ServiceMonitor" and monitor["spec"]["endpoints"][0]["port"] == "metrics"


@pytest.mark.parametrize("kind", CHART_VALUES)
def test_pods_run_restricted_with_read_only_roots_and_autoscalers_own_the_replicas(kind):
    for name, deployment in _of(_chart(kind), "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["fsGroup"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
            assert security["readOnlyRootFilesystem"] is True
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], f"{name}: nowhere to write"
        if name != "redis":
            assert "replicas" not in deployment["spec"], f"{name}: replicas beside an autoscaler"


def test_only_the_gateway_reaches_the_stages_and_only_the_gateway_and_worker_reach_redis():
    policies = list(_of(_chart("cpu"), "NetworkPolicy").values())
    allowed = {"grpc": {"gateway"}, "redis": {"gateway", "worker"}}
    for policy in policies:
        for rule in (rule for rule in policy["spec"]["ingress"] if "from" in rule):
            sources = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in rule["from"]}
            assert all(sources <= allowed[port["port"]] for port in rule["ports"]), rule
    selected = {v for p in policies for e in p["spec"]["podSelector"].get("matchExpressions", []) for v in e["values"]}
    selected |= {p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") for p in policies}
    assert {"asr", "llm", "tts", "sda", "redis"} <= selected


def test_every_stage_scales_alone_with_grpc_probes_and_disruption_budgets():
    docs = _chart("cpu")
    config = _of(docs, "ConfigMap")["config"]["data"]
    for spec in SERVICES:
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
            assert spec.name in _of(docs, kind), f"{spec.name}: no {kind}"
        if spec.grpc:
            container = _of(docs, "Deployment")[spec.name]["spec"]["template"]["spec"]["containers"][0]
            assert container["startupProbe"]["grpc"]["port"] == spec.port
            assert container["readinessProbe"]["grpc"]["port"] == spec.port
            assert _of(docs, "Service")[spec.name]["spec"]["clusterIP"] == "None"  # the gateway balances per pod
            assert config[f"GATEWAY_{spec.name.upper()}_ADDRESS"] == f"dns:///avatar-{spec.name}:{spec.port}"
    for name in ("asr", "llm", "tts", "sda", "gateway"):  # a drain or a lost node leaves one serving
        assert _of(docs, "PodDisruptionBudget")[name]["spec"]["minAvailable"] == 1
        assert _of(docs, "HorizontalPodAutoscaler")[name]["spec"]["minReplicas"] >= 2


def test_the_gpu_values_put_three_stages_on_gpus_and_scale_them_on_streams():
    docs = _chart("gpu")
    deployments, scalers = _of(docs, "Deployment"), _of(docs, "HorizontalPodAutoscaler")
    for name in ("asr", "tts", "sda"):
        pod = deployments[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1 and container["image"] == f"avatar-{name}:cuda"
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and pod["tolerations"]
        assert scalers[name]["spec"]["metrics"][0]["pods"]["metric"]["name"] == "avatar_streams_in_flight"
    llm = deployments["llm"]["spec"]["template"]["spec"]
    assert "nodeSelector" not in llm and "nvidia.com/gpu" not in llm["containers"][0]["resources"]["limits"]
    assert {e["name"]: e["value"] for e in deployments["sda"]["spec"]["template"]["spec"]["containers"][0]["env"]
            if "value" in e}["SDA_DEVICE"] == "cuda"


def test_an_exposed_install_uses_the_operators_secrets_registry_redis_and_scales_the_gateway_on_sessions():
    docs = _chart("exposed")
    assert "Secret" not in {d["kind"] for d in docs} and "redis" not in _of(docs, "Deployment")
    gateway = _of(docs, "Deployment")["gateway"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in gateway["containers"][0]["env"]}
    assert env["REDIS_URL"]["value"] == "rediss://:$(REDIS_PASSWORD)@redis.ops:6380/0"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "ops-avatar"
    assert env["GATEWAY_C2PA_KEY_FILE"]["value"].startswith("/etc/avatar/c2pa/")
    assert gateway["containers"][0]["image"] == "reg.example.org/team/avatar-gateway:1.2.3"
    ingress = _of(docs, "Ingress")["gateway"]["spec"]
    assert ingress["tls"][0]["secretName"] == "avatar-tls" and ingress["rules"][0]["host"] == "avatar.example.org"
    scaler = _of(docs, "HorizontalPodAutoscaler")["gateway"]["spec"]["metrics"][0]
    assert scaler["pods"]["metric"]["name"] == "avatar_gateway_sessions_load"  # what admission measures
    assert scaler["pods"]["target"]["averageValue"] == "0.7"
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert _of(docs, "PersistentVolumeClaim")["avatars"]["spec"]["storageClassName"] == "nfs"


def test_no_secret_value_is_written_into_a_pod_and_a_missing_redis_address_is_a_clear_error():
    for docs in (_chart("cpu"), _chart("exposed")):
        for deployment in _of(docs, "Deployment").values():
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                for variable in container.get("env", []):
                    if re.search(r"TOKEN|PASSWORD|SECRET", variable["name"]):
                        assert "valueFrom" in variable, variable
                assert not any("requirepass" in a and "$(REDIS_PASSWORD)" in a for a in container.get("args", []))
    with pytest.raises(helm.HelmError, match="redis.externalUrl is required"):
        render(sets=("redis.enabled=false",))


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


def test_push_names_each_built_image_as_the_chart_wants_it():
    from deploy.images.push import pushes

    present = {"avatar-gateway:latest", "avatar-sda:latest", "avatar-sda:cuda", "python:3.11-slim-bookworm"}
    assert pushes("reg.example.org/team/", "1.2.3", present) == [
        ("avatar-sda:latest", "reg.example.org/team/avatar-sda:1.2.3"),
        ("avatar-sda:cuda", "reg.example.org/team/avatar-sda:cuda"),
        ("avatar-gateway:latest", "reg.example.org/team/avatar-gateway:1.2.3"),
    ]
    sda = _of(documents(sets=("image.registry=reg.example.org/team/,image.tag=1.2.3",)), "Deployment")["sda"]
    assert sda["spec"]["template"]["spec"]["containers"][0]["image"] == "reg.example.org/team/avatar-sda:1.2.3"
