"""With a token configured, the WebSocket and the REST API refuse a client without it (the compose default);
sessions cannot read each other's history."""

import json

import httpx
import pytest
import websockets

from services.gateway.access import mint
from tests.stack import Stack
from tests.test_gateway_ws import hello, next_event, send_speech

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


def test_the_rest_api_asks_for_the_same_token(locked_gateway):
    base = locked_gateway.replace("ws://", "http://").removesuffix("/ws")
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        refused = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert refused.status_code == 401, (headers, refused.status_code)
    assert httpx.get(f"{base}/v1/avatars/default", timeout=30).status_code == 401
    allowed = httpx.get(f"{base}/v1/avatars/default", headers={"Authorization": "Bearer s3cret-token"}, timeout=30)
    assert allowed.status_code == 200


async def test_one_session_cannot_read_another_ones_history(stack):
    """History lives in Redis under a 128-bit random session id that only its client is told; no API lists or
    returns sessions, a made-up id is refused, and another session's replies never see it."""
    url = f"ws://{stack.address('gateway')}/ws"
    secret = "turquoise"
    async with websockets.connect(url, max_size=None) as ws:
        ready = await hello(ws)
        owner = ready["session_id"]
        await send_speech(ws, f"Remember this: my favourite colour is {secret}.")
        await next_event(ws, "turn_end", timeout=120)
    assert len(owner) >= 22  # token_urlsafe(16): 128 random bits
    async with websockets.connect(url, max_size=None) as ws:
        for guess in (owner[:-1] + ("A" if owner[-1] != "A" else "B"), "0" * len(owner), "*", owner + "x"):
            await ws.send(json.dumps({"type": "hello", "version": 1, "session_id": guess}))
            error = await next_event(ws, "error")
            assert error["code"] == "unknown_session" and not error["fatal"]
        ready = await hello(ws)
        assert ready["session_id"] != owner
        await send_speech(ws, "What is my favourite colour?")
        end = await next_event(ws, "turn_end", timeout=120)
        assert secret not in end["reply"].lower()
    paths = httpx.get(f"http://{stack.address('gateway')}/openapi.json", timeout=30).json()["paths"]
    assert not [p for p in paths if "session" in p or "history" in p], paths


KEY = "the-gateway-signing-key-for-this-test-0123"


@pytest.fixture(scope="module")
def jwt_gateway(redis_url):
    stack = Stack(redis_url, extra_env={"GATEWAY_JWT_SECRET": KEY}).start(names={"gateway"})
    stack.wait("gateway")
    yield f"ws://{stack.address('gateway')}/ws"
    stack.stop()


async def _hello(url: str, token: str, **fields) -> dict:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "token": token, **fields}))
        event = json.loads(await ws.recv())
        if event["type"] == "error" and event["fatal"]:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            event["close"] = closed.value.rcvd.code
        return event


async def test_a_users_session_is_theirs_alone(jwt_gateway):
    alice, bob = mint(KEY, "alice", ["converse"], None, 600), mint(KEY, "bob", ["converse"], None, 600)
    ready = await _hello(jwt_gateway, alice)
    assert ready["type"] == "ready"
    taken = await _hello(jwt_gateway, bob, session_id=ready["session_id"])
    assert taken["code"] == "forbidden" and taken["close"] == 1008 and "another user" in taken["message"]
    again = await _hello(jwt_gateway, alice, session_id=ready["session_id"])
    assert again["type"] == "ready" and again["resumed"]


async def test_expired_forged_and_ungranted_tokens_are_refused(jwt_gateway):
    expired = mint(KEY, "alice", ["converse"], None, 60).split(".")
    for token, code in ((mint(KEY, "alice", ["converse"], None, -120), "unauthorized"),
                        (".".join(expired[:2] + ["AAAA"]), "unauthorized"),
                        ("tökén-ünïcødé", "unauthorized"),
                        (mint(KEY, "carol", ["rest"], None, 600), "forbidden")):
        event = await _hello(jwt_gateway, token)
        assert event["code"] == code and event["close"] == 1008, (token, event)
    only_default = mint(KEY, "dave", ["converse"], ["default"], 600)
    assert (await _hello(jwt_gateway, only_default))["type"] == "ready"
    assert (await _hello(jwt_gateway, only_default, avatar_id="someone-else"))["code"] == "forbidden"


def test_rest_calls_need_their_grant_and_ops_mint_tokens(jwt_gateway):
    base = jwt_gateway.replace("ws://", "http://").removesuffix("/ws")
    status = f"{base}/v1/avatars/default"
    assert httpx.get(status, timeout=30).status_code == 401
    converse_only = {"Authorization": f"Bearer {mint(KEY, 'alice', ['converse'], None, 600)}"}
    assert httpx.get(status, headers=converse_only, timeout=30).status_code == 200  # a page shows the avatars
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    assert httpx.post(f"{base}/v1/chat/completions", json=chat, headers=converse_only, timeout=30).status_code == 403
    assert httpx.post(f"{base}/v1/avatars", files={"photo": ("p.png", b"x")}, headers=converse_only,
                      timeout=30).status_code == 403
    assert httpx.post(f"{base}/admin/tokens", json={"subject": "eve"}, headers=converse_only,
                      timeout=30).status_code == 403
    admin = {"Authorization": f"Bearer {mint(KEY, 'ops', ['admin'], None, 600)}"}
    minted = httpx.post(f"{base}/admin/tokens", json={"subject": "frank", "grants": ["make_avatars"], "ttl_s": 600},
                        headers=admin, timeout=30)
    assert minted.status_code == 200 and minted.json()["subject"] == "frank"
    frank = {"Authorization": f"Bearer {minted.json()['token']}"}
    assert httpx.get(status, headers=frank, timeout=30).status_code == 200
    bad = httpx.post(f"{base}/admin/tokens", json={"subject": "x", "grants": ["root"]}, headers=admin, timeout=30)
    assert bad.status_code == 400 and "root" in bad.json()["error"]["message"]
