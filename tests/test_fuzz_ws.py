"""The WebSocket, fuzzed: thousands of malformed, truncated, oversized, wrong-type and out-of-order messages get
typed error events and never crash the gateway; the session keeps answering, and a new one still converses."""

import asyncio
import json

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.protocol import ErrorCode
from tests.fuzz_strategies import ws_message
from tests.test_gateway_ws import hello, next_event, send_speech

pytestmark = pytest.mark.e2e

CODES = {code.value for code in ErrorCode}
HELLO = json.dumps({"type": "hello", "version": 1})
SENT = {"messages": 0, "sessions": 0}


async def _fuzz_one(url: str, messages: list, hello_at: int | None) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        script = list(messages)
        if hello_at is not None:
            script.insert(min(hello_at, len(script)), HELLO)
        for item in script:
            await ws.send(item)
        SENT["messages"] += len(script)
        SENT["sessions"] += 1
        probe = f"probe-{SENT['sessions']}"
        try:
            await ws.send(json.dumps({"type": probe}))
            while True:
                raw = await asyncio.wait_for(ws.recv(), 30)
                if isinstance(raw, bytes):
                    continue
                event = json.loads(raw)
                if event["type"] == "error":
                    assert event["code"] in CODES, event
                    if probe in event["message"]:
                        return  # the session still reads and answers
        except websockets.ConnectionClosed as closed:
            # Only a fatal error (a wrong protocol version or token in a hello) may end the session.
            assert closed.rcvd is not None and closed.rcvd.code == 1008, f"closed with {closed.rcvd}"


@given(messages=st.lists(ws_message(), min_size=60, max_size=90), hello_at=st.one_of(st.none(), st.integers(0, 90)))
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
def test_malformed_messages_get_typed_errors(stack, messages, hello_at):
    asyncio.run(_fuzz_one(f"ws://{stack.address('gateway')}/ws", messages, hello_at))


async def test_after_the_fuzz_the_gateway_still_converses(stack):
    assert SENT["messages"] >= 2000, SENT
    async with websockets.connect(f"ws://{stack.address('gateway')}/ws", max_size=None) as ws:
        await hello(ws)
        await send_speech(ws, "Good morning! How are you?")
        end = await next_event(ws, "turn_end", timeout=120)
    assert end["reply"].strip()
