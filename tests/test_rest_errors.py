"""REST errors come in OpenAI's shape, and a chat stream that breaks midway ends with an error chunk, not
silence (the text engine here is a gRPC server that fails after two deltas: an injected fault)."""

import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from avatar.llm.v1 import llm_pb2, llm_pb2_grpc
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.runner.redis_server import free_port

pytestmark = pytest.mark.unit


class BreaksMidway(llm_pb2_grpc.LlmServiceServicer):
    def Generate(self, request, context):
        yield llm_pb2.GenerateResponse(delta="Hello")
        yield llm_pb2.GenerateResponse(delta=" there")
        context.abort(grpc.StatusCode.INTERNAL, "the model crashed")


@pytest.fixture
def failing_llm():
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    llm_pb2_grpc.add_LlmServiceServicer_to_server(BreaksMidway(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture
def api(failing_llm, redis_url):
    settings = GatewaySettings(llm_address=failing_llm, redis_url=redis_url, auth_token="secret",
                               asr_address=f"127.0.0.1:{free_port()}")
    with TestClient(create_app(settings), headers={"Authorization": "Bearer secret"}) as client:
        yield client


CHAT = {"messages": [{"role": "user", "content": "Hi"}]}


def test_a_stream_that_fails_midway_ends_with_an_error_chunk(api):
    with api.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as stream:
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "Hello there"
    assert events[-1]["error"]["message"] == "the text engine failed: the model crashed"
    assert events[-1]["error"]["type"] == "api_error"


def test_a_reply_that_fails_midway_is_an_error_not_half_an_answer(api):
    reply = api.post("/v1/chat/completions", json=CHAT)
    assert reply.status_code == 502 and reply.json()["error"]["message"] == "the model crashed"


def test_errors_have_openais_shape(api):
    bad = api.post("/v1/chat/completions", json={"messages": []})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert bad.json()["error"]["param"] == "messages"
    unauthorized = api.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer wrong"})
    assert unauthorized.status_code == 401 and unauthorized.json()["error"]["code"] == "invalid_api_key"
    down = api.post("/v1/audio/transcriptions", files={"file": ("a.wav", _silence_wav())})
    assert down.status_code == 503 and down.json()["error"]["code"] == "stage_unavailable"


def _silence_wav() -> bytes:
    import io
    import wave
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(32000))
    return out.getvalue()
