"""With a token configured, the WebSocket refuses a hello without it (the compose default)."""

import json

import pytest
import websockets

from tests.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def locked_gateway(redis_url):
    stack = Stack(redis_url, extra_env={"GATEWAY_AUTH_TOKEN": "s3cret-token"}).start(names={"gateway"})
    stack.wait("gateway")
    yield f"ws://{stack.address('gateway')}/ws"
    stack.stop()


async def test_a_hello_without_the_token_is_refused(locked_gateway):
    for token in ("", "wrong"):
        async with websockets.connect(locked_gateway) as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1, "token": token}))
            event = json.loads(await ws.recv())
            assert event["code"] == "unauthorized" and event["fatal"]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1008


async def test_the_right_token_opens_a_session(locked_gateway):
    async with websockets.connect(locked_gateway) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "token": "s3cret-token"}))
        event = json.loads(await ws.recv())
        assert event["type"] == "ready" and event["session_id"]
