"""One turn is one trace: the gateway's turn span, a child per stage, and each service's RPC span under it —
exported on the console here (OTEL_TRACES_EXPORTER=console) or to an OTLP endpoint, and the latency report the
client gets is read from the turn span's events."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
import websockets
from avatar.tts.v1 import tts_pb2, tts_pb2_grpc

from tests.stack import Stack
from tests.test_gateway_ws import hello, next_event, send_speech

pytestmark = pytest.mark.e2e


def spans(log_file) -> list[dict]:
    out = []
    for line in log_file.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"trace_id"' in line:
            out.append(json.loads(line))
    return out


async def test_a_turn_is_one_trace_across_gateway_and_services(stack):
    """Both ways a reply starts: spoken in real time (the LLM usually starts at the pause, speculatively) and
    fast (it starts at the end of the turn)."""
    async with websockets.connect(f"ws://{stack.address('gateway')}/ws", max_size=None) as ws:
        ready = await hello(ws)
        ends = []
        for speed in (1.0, 5.0):
            await send_speech(ws, "Hello there, how are you today?", speed=speed)
            ends.append(await next_event(ws, "turn_end", timeout=120))
    time.sleep(1.5)  # the batch exporters flush every 0.5 s
    gateway = spans(stack.logs / "gateway.log")
    for end in ends:
        turn_id = f"{ready['session_id']}:{end['turn']}"
        turn = next(s for s in gateway if s["name"] == "turn" and s["attributes"].get("avatar.turn_id") == turn_id)
        assert turn["attributes"]["avatar.speculated"] == end["speculated"]
        trace_id = turn["context"]["trace_id"]
        assert turn["parent_id"] is None, "a turn is the root of its own trace"
        children = {s["name"]: s for s in gateway if s["parent_id"] == turn["context"]["span_id"]}
        assert {"llm", "tts", "sda"} <= set(children)
        for service, rpc in (("llm", "Generate"), ("tts", "StreamingSynthesize"), ("sda", "StreamingAnimate")):
            served = [s for s in spans(stack.logs / f"{service}.log")
                      if s["context"]["trace_id"] == trace_id and s["name"] == rpc]
            assert served, f"no {rpc} span of turn {turn_id} in the {service} service"
            assert served[-1]["parent_id"] == children[service]["context"]["span_id"]
            assert served[-1]["attributes"]["avatar.turn_id"] == turn_id
        events = {e["name"] for e in turn["events"]} - {"end_of_turn"}
        assert set(end["latency_ms"]) == events


def test_spans_go_to_an_otlp_endpoint_when_configured(redis_url):
    received = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}"}
    tts = Stack(redis_url, extra_env=env).start(["tts"])
    try:
        assert tts.wait("tts") == "SERVING"
        with grpc.insecure_channel(tts.address("tts")) as channel:
            tts_pb2_grpc.TtsServiceStub(channel).ListVoices(tts_pb2.ListVoicesRequest(), timeout=10)
        deadline = time.monotonic() + 10
        while not any(b"ListVoices" in body for _, body in received) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        tts.stop()
        server.shutdown()
    assert any(path == "/v1/traces" and b"ListVoices" in body and b"avatar.tts.v1.TtsService" in body
               for path, body in received), [path for path, _ in received]
