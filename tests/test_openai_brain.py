"""A bigger brain where the user has one: the conversation against a real OpenAI-compatible server (llama.cpp's
own server over the packaged GGUF, standing in for Ollama, vLLM or a llama.cpp server with a larger model). The
reply streams, `ready` says which model answers, and a barge-in stops the server's stream."""

import asyncio
import json

import pytest
import websockets

from tests.stack import ExtraGateway
from tests.test_gateway_ws import hello, next_event, send_speech
from tests.test_llm import openai_compatible_service

pytestmark = pytest.mark.e2e


async def test_a_conversation_on_an_openai_compatible_server_streams_says_its_model_and_stops_at_a_barge_in(stack):
    with openai_compatible_service(stack) as llm_address:
        gateway = ExtraGateway(stack, env={"GATEWAY_LLM_ADDRESS": llm_address})
        try:
            async with websockets.connect(gateway.url, max_size=None) as ws:
                ready = await hello(ws)
                assert ready["model"]["backend"] == "openai" and ready["model"]["name"] == "smollm2-server", ready
                await send_speech(ws, "Please tell me a long story about a dragon who lived in the mountains.")
                deltas = 0
                while deltas < 3:  # the answer streams in deltas from the server
                    event = await next_event(ws, "reply_delta", timeout=120)
                    deltas += bool(event["text"])
                await send_speech(ws, "Stop, tell me about the ocean instead.")
                after_interruption = []
                interrupted = None
                while True:
                    raw = await asyncio.wait_for(ws.recv(), 120)
                    if isinstance(raw, bytes):
                        continue
                    event = json.loads(raw)
                    if event["type"] == "interrupted" and event["turn"] == 0:
                        interrupted = event
                    elif interrupted and event["type"] == "reply_delta" and event["turn"] == 0:
                        after_interruption.append(event["text"])
                    elif event["type"] == "turn_end" and event["turn"] >= 1 and event["reply"]:
                        break
                assert interrupted is not None, "speaking over the reply did not stop it"
                assert not after_interruption, f"the server's stream went on after the barge-in: {after_interruption}"
        finally:
            gateway.stop()
