"""A crashed stage degrades the turn, not the server: separate processes, killed for real."""

import asyncio
import json

import pytest
import websockets

from services.runner.redis_server import EmbeddedRedis
from tests.stack import Stack
from tests.test_gateway_ws import hello, send_speech

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_stack():
    """Its own set of processes, since these tests kill some."""
    redis = EmbeddedRedis()
    stack = Stack(redis.url).start()
    for name in ("asr", "llm", "tts", "sda", "gateway"):
        stack.wait(name)
    yield stack
    stack.stop()
    redis.stop()


async def collect_turn(ws, timeout=120):
    """Events and media up to the next turn_end."""
    events, media = [], []
    while True:
        raw = await asyncio.wait_for(ws.recv(), timeout)
        if isinstance(raw, bytes):
            media.append(raw[0])
            continue
        event = json.loads(raw)
        events.append(event)
        if event["type"] == "turn_end":
            return events, media


async def test_sda_killed_mid_reply_goes_on_audio_only(own_stack):
    async with websockets.connect(f"ws://{own_stack.address('gateway')}/ws", max_size=None) as ws:
        await hello(ws)
        await send_speech(ws, "Tell me a long story about a brave little boat on the sea.")
        first = await asyncio.wait_for(ws.recv(), 60)
        while not isinstance(first, bytes):  # wait until video frames flow
            first = await asyncio.wait_for(ws.recv(), 60)
        own_stack.kill("sda")
        events, media = await collect_turn(ws)
        assert any(e["type"] == "warning" and e["code"] == "video_unavailable" for e in events)
        assert 1 in media, "no audio-only messages after the animation stage died"
        assert not any(e["type"] == "error" for e in events)
    own_stack.start_one("sda")
    assert own_stack.wait("sda") == "SERVING"
    async with websockets.connect(f"ws://{own_stack.address('gateway')}/ws", max_size=None) as ws:
        await hello(ws)
        await send_speech(ws, "Hello again!")
        events, media = await collect_turn(ws)
        assert 2 in media, "video did not come back once the stage returned"


async def test_llm_killed_ends_the_turn_with_a_typed_error_and_the_session_lives(own_stack):
    own_stack.kill("llm")
    async with websockets.connect(f"ws://{own_stack.address('gateway')}/ws", max_size=None) as ws:
        await hello(ws)
        await send_speech(ws, "What time is it?")
        events, _ = await collect_turn(ws)
        errors = [e for e in events if e["type"] == "error"]
        assert errors and errors[0]["code"] == "stage_unavailable" and not errors[0]["fatal"]
        own_stack.start_one("llm")
        assert own_stack.wait("llm") == "SERVING"
        await send_speech(ws, "Hello, who are you?")  # same session, next turn
        events, media = await collect_turn(ws)
        assert not any(e["type"] == "error" for e in events) and events[-1]["reply"].strip()
        assert 2 in media
