"""The foundation's promises: five processes, honest health, reflection, metrics, clear errors."""

import ipaddress
import json
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from avatar.asr.v1 import asr_pb2, asr_pb2_grpc
from avatar.common.v1 import common_pb2
from avatar.tts.v1 import tts_pb2, tts_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.runner.health import SERVING, status
from services.runner.redis_server import free_port
from tests.grpc_helpers import asr_requests
from tests.speech import speak
from tests.stack import ROOT

pytestmark = pytest.mark.e2e

STAGE_SERVICES = {
    "asr": "avatar.asr.v1.AsrService",
    "llm": "avatar.llm.v1.LlmService",
    "tts": "avatar.tts.v1.TtsService",
    "sda": "avatar.sda.v1.SdaService",
}
# Stages whose model has landed must be SERVING; the others must say NOT_SERVING rather than pretend.
WITH_MODEL = {"asr", "llm", "tts", "sda"}


def test_every_service_answers_its_health_check(stack):
    for name in STAGE_SERVICES:
        want = SERVING if name in WITH_MODEL else "NOT_SERVING"
        assert stack.wait(name, want, timeout=120) == want, name
    assert status(stack.specs["gateway"]) == SERVING
    with urllib.request.urlopen(f"{stack.ops()}/readyz") as reply:
        body = json.loads(reply.read())
    assert body["ready"] and body["redis"] == "ok" and body["stages"]["asr"] == SERVING


def test_the_public_port_says_ready_or_not_and_nothing_internal(stack):
    """Stage health, Redis and session counts are for operators, on the metrics port; so are the metrics."""
    with urllib.request.urlopen(f"http://{stack.address('gateway')}/readyz") as reply:
        assert json.loads(reply.read()) == {"ready": True}
    with pytest.raises(urllib.error.HTTPError) as hidden:
        urllib.request.urlopen(f"http://{stack.address('gateway')}/metrics")
    assert hidden.value.code == 404


@pytest.mark.parametrize("name", list(STAGE_SERVICES))
def test_reflection_lists_the_service(stack, name):
    with grpc.insecure_channel(stack.address(name)) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in reply.list_services_response.service}
    assert {STAGE_SERVICES[name], "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("name", list(STAGE_SERVICES) + ["gateway"])
def test_metrics_are_scraped(stack, name):
    spec = stack.specs[name]
    with urllib.request.urlopen(f"http://127.0.0.1:{spec.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    assert "process_resident_memory_bytes" in text or "python_info" in text
    if spec.grpc:
        assert "avatar_model_ready" in text and "avatar_streams_in_flight" in text


# a stage that cannot load what it was told to → (its environment, what its log must say)
LOAD_FAILURES = {
    "sda-missing-checkpoint": ("sda", {"SDA_CHECKPOINT_PATH": "/nonexistent/sda.pt"}, "/nonexistent/sda.pt"),
    "sda-told-to-use-a-gpu": ("sda", {"SDA_DEVICE": "cuda"}, "SDA_DEVICE=cuda, but torch sees no GPU"),
    "tts-told-to-use-a-gpu": ("tts", {"TTS_USE_CUDA": "true"}, "TTS_USE_CUDA=true, but onnxruntime runs on"),
}


@pytest.mark.parametrize("case", LOAD_FAILURES)
def test_a_stage_that_cannot_load_what_it_was_told_exits_non_zero_with_the_reason(stack, case):
    """No lingering NOT_SERVING and no quiet fall-back to the CPU: the process exits non-zero and says why, so
    that compose, Kubernetes or `make run` restarts it or shows the failure."""
    name, settings, reason = LOAD_FAILURES[case]
    if "gpu" in case and torch_sees_a_gpu():
        pytest.skip("this machine has a GPU")
    prefix = name.upper()
    env = dict(stack.env(), **{f"{prefix}_PORT": str(free_port()), f"{prefix}_METRICS_PORT": "0"}, **settings)
    process = subprocess.run([sys.executable, "-m", f"services.{name}"], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=180)
    assert process.returncode != 0
    assert "could not load its model" in process.stderr and reason in process.stderr, process.stderr[-2000:]


def torch_sees_a_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _asr_call(stack, requests):
    with grpc.insecure_channel(stack.address("asr")) as channel:
        return list(asr_pb2_grpc.AsrServiceStub(channel).StreamingRecognize(requests, timeout=60))


def _expect_invalid(stack, requests, fragment):
    with pytest.raises(grpc.RpcError) as err:
        _asr_call(stack, requests)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in err.value.details()


def test_bad_first_message_oversized_chunk_and_wrong_rate_are_refused(stack):
    audio_first = iter([asr_pb2.StreamingRecognizeRequest(audio=b"\0\0" * 160)])
    _expect_invalid(stack, audio_first, "first message must carry `config`")

    requests = list(asr_requests(np.zeros(1600, dtype=np.float32)))
    oversized = requests[:1] + [asr_pb2.StreamingRecognizeRequest(audio=b"\0\0" * 1_000_000)]
    _expect_invalid(stack, iter(oversized), "exceeds the limit")

    bad_rate = asr_pb2.StreamingRecognizeRequest(
        config=asr_pb2.RecognitionConfig(
            format=common_pb2.AudioFormat(sample_rate_hz=1234, encoding=common_pb2.LINEAR16)
        )
    )
    _expect_invalid(stack, iter([bad_rate]), "sample rate 1234 Hz is not supported")

    with grpc.insecure_channel(stack.address("tts")) as channel:
        with pytest.raises(grpc.RpcError) as err:
            list(tts_pb2_grpc.TtsServiceStub(channel).StreamingSynthesize(
                iter([tts_pb2.SynthesizeRequest(text="hello")]), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # ...and the server keeps serving others.
    responses = _asr_call(stack, asr_requests(np.concatenate([speak("Good morning to you."), np.zeros(16000, np.float32)])))
    finals = [r.hypothesis for r in responses if r.WhichOneof("result") == "hypothesis" and r.hypothesis.is_final]
    assert finals and "morning" in finals[0].transcript.lower()


def _listening(port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses a local TCP port listens on, from the kernel's socket tables (IPv4-mapped ones as IPv4)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
            ip = ipaddress.ip_address(raw)
            found.add(getattr(ip, "ipv4_mapped", None) or ip)
    return found


def test_make_run_listens_on_this_machine_only(stack):
    """The stages speak unauthenticated gRPC: by default nothing beyond the loopback reaches any service's port."""
    for name, spec in stack.specs.items():
        for port in {spec.port, spec.metrics_port}:
            addresses = _listening(port)
            assert addresses and all(a.is_loopback for a in addresses), (name, port, addresses)
