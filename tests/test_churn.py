"""Churn: 50 sessions connect, converse and leave (a third of them hang up mid-reply); afterwards the gateway's
memory, open stage streams, sessions and tasks are back to where they were."""

import asyncio

import pytest
import websockets

from tests.reliability_figures import record
from tests.test_degradation import gateway_metrics
from tests.test_gateway_ws import hello, next_event, send_speech

pytestmark = pytest.mark.e2e

SESSIONS = 50
AT_ONCE = 3
PHRASES = ["Hi there!", "Good morning!", "How are you?", "Tell me a joke.", "What is your name?"]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


async def _converse(url: str, index: int) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        await hello(ws)
        await send_speech(ws, PHRASES[index % len(PHRASES)])
        if index % 3 == 2:  # hang up as soon as the reply starts
            while not isinstance(await asyncio.wait_for(ws.recv(), 60), bytes):
                pass
            return
        await next_event(ws, "turn_end", timeout=120)


async def test_fifty_sessions_come_and_go_without_leaving_anything(stack):
    url = f"ws://{stack.address('gateway')}/ws"
    pid = stack.processes["gateway"].pid
    for i in range(AT_ONCE):  # warm up: first-use allocations are not a leak
        await _converse(url, i)
    await asyncio.sleep(1.0)
    before = rss_mb(pid)
    for start in range(0, SESSIONS, AT_ONCE):
        await asyncio.gather(*(_converse(url, i) for i in range(start, min(start + AT_ONCE, SESSIONS))))
    await asyncio.sleep(2.0)  # hung-up sessions finish their teardown
    after = gateway_metrics(stack)
    assert not {k: v for k, v in after.items() if k.startswith("avatar_gateway_grpc_streams_open") and v}
    assert after["avatar_gateway_sessions_open"] == 0
    assert after["avatar_gateway_asyncio_tasks"] <= 12
    grown = rss_mb(pid) - before
    assert grown < 25, f"the gateway grew by {grown:.1f} MB over {SESSIONS} sessions"
    record("churn", f"gateway RSS {before:.0f} → {before + grown:.0f} MB over the {SESSIONS}; 0 stage streams, "
           f"0 sessions and {after['avatar_gateway_asyncio_tasks']:.0f} asyncio tasks left once they closed")
