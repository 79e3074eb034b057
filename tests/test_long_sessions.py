"""A conversation outlives what it runs on: stage connections that age out every few seconds (GOAWAY, a grace,
then the cut), and a gateway that stops mid-reply (a deploy) while another replica takes the session over."""

import asyncio
import json
import signal

import httpx
import pytest
import websockets

from tests.fault_proxy import FaultProxy
from tests.reliability_figures import record
from tests.speech import wer
from tests.stack import ExtraGateway, Stack
from tests.test_gateway_ws import send_speech

pytestmark = pytest.mark.e2e

SENTENCES = [
    "Good morning, how are you today?",
    "I would like to book a table for two people.",
    "Could you tell me the time of the next train?",
    "Thank you very much for your help.",
]


@pytest.fixture(scope="module")
def ageing_stack(redis_url):
    """Speech recognition whose connections are 3 s old at most (+1 s grace); the gateway never renews its stream
    on its own, so every ageing cuts a stream it is using."""
    env = {"ASR_MAX_CONNECTION_AGE_S": "3", "ASR_MAX_CONNECTION_AGE_GRACE_S": "1",
           "GATEWAY_ASR_STREAM_RENEW_S": "1000"}
    stack = Stack(redis_url, extra_env=env).start(["asr", "gateway"])
    try:
        for name in ("asr", "gateway"):
            stack.wait(name)
        yield stack
    finally:
        stack.stop()


async def test_a_conversation_outlives_several_connection_ageings(ageing_stack):
    finals: dict[int, str] = {}
    errors: list[dict] = []
    async with websockets.connect(f"ws://{ageing_stack.address('gateway')}/ws", max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1}))

        async def read() -> None:
            async for raw in ws:
                if isinstance(raw, bytes):
                    continue
                event = json.loads(raw)
                if event["type"] == "transcript" and event["final"] and event["text"]:
                    finals[event["turn"]] = finals.get(event["turn"], "") + " " + event["text"]
                elif event["type"] == "error" and "speech recognition" in event["message"]:
                    errors.append(event)

        reader = asyncio.create_task(read())
        loop = asyncio.get_running_loop()
        started = loop.time()
        for sentence in SENTENCES:  # in real time, with pauses: about 20 s, five ageings or more
            await send_speech(ws, sentence, gap_s=1.5, speed=1.0)
            await asyncio.sleep(1.0)
        await asyncio.sleep(3.0)  # the last final
        elapsed = loop.time() - started
        reader.cancel()
    heard = " ".join(finals[turn] for turn in sorted(finals))
    reopened = _counter(ageing_stack, 'avatar_gateway_asr_streams_total{cause="reopened"}')
    assert not errors, errors
    assert reopened >= 3, "the connections did not age out under the conversation: nothing was tested"
    error_rate = wer([(" ".join(SENTENCES), heard)])
    assert error_rate <= 0.15, heard
    record("ageing", f"{reopened:.0f} streams cut and re-opened over {elapsed:.0f} s with the utterance so far sent "
           f"again; the {len(SENTENCES)} sentences heard at {error_rate:.0%} word error rate, no error event")


def _counter(stack, name: str) -> float:
    text = httpx.get(f"{stack.ops()}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


async def _until(ws, kind: str, seen: list[dict], timeout: float = 120) -> dict:
    while True:
        raw = await asyncio.wait_for(ws.recv(), timeout)
        if isinstance(raw, str):
            seen.append(json.loads(raw))
            if seen[-1]["type"] == kind:
                return seen[-1]


async def test_a_stopping_gateway_finishes_the_reply_and_the_session_resumes_on_another(stack):
    # The reply in flight has all the time it needs: how long a reply takes to make depends on the machine and on
    # what the text engine says; the grace is an operator's setting, not what is tested. The notice keeps the
    # draining gateway listening however soon the reply ends, so the newcomer below always meets it.
    first = ExtraGateway(stack, env={"GATEWAY_DRAIN_GRACE_S": "600", "GATEWAY_DRAIN_NOTICE_S": "15"})
    second = ExtraGateway(stack)
    try:
        seen: list[dict] = []
        async with websockets.connect(first.url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1}))
            session = (await _until(ws, "ready", seen))["session_id"]
            await send_speech(ws, "What colour is the sky on a clear day?")
            await _until(ws, "reply_delta", seen)
            first.process.send_signal(signal.SIGTERM)  # a deploy: mid-reply
            await asyncio.sleep(0.5)
            readiness = httpx.get(f"{first.ops}/readyz")
            assert readiness.status_code == 503 and readiness.json()["draining"]
            async with websockets.connect(first.url) as late:  # a newcomer is sent elsewhere at once
                assert json.loads(await late.recv())["type"] == "reconnect"
            end = await _until(ws, "turn_end", seen)  # the reply in flight finishes...
            assert end["reply"].strip() and not any(e["type"] == "error" for e in seen)
            await _until(ws, "reconnect", seen)  # ...then the client is told to reconnect
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd.code == 1012
        assert first.process.wait(timeout=30) in (0, -signal.SIGTERM)  # it stopped once drained
        seen = []
        async with websockets.connect(second.url, max_size=None) as ws:  # the other replica takes over
            await ws.send(json.dumps({"type": "hello", "version": 1, "session_id": session}))
            ready = await _until(ws, "ready", seen)
            assert ready["resumed"] and ready["history_messages"] == 2 and ready["next_turn"] == 1
            await send_speech(ws, "What did I just ask you?")
            assert (await _until(ws, "turn_end", seen))["turn"] == 1
        record("gateway_restart", f"the session resumed on the other process with {ready['history_messages']} "
               f"messages of history and next turn {ready['next_turn']}, and answered")
    finally:
        first.stop()
        second.stop()


async def _turn(ws, question: str, timeout: float = 90) -> tuple[list[dict], float]:
    """Asks `question`; the events up to its turn_end and the seconds from the end of the user's turn to it."""
    await send_speech(ws, question)
    seen: list[dict] = []
    await _until(ws, "end_of_turn", seen, timeout)
    started = asyncio.get_running_loop().time()
    await _until(ws, "turn_end", seen, timeout)
    return seen, asyncio.get_running_loop().time() - started


async def test_network_faults_to_a_stage_end_turns_with_typed_errors_and_never_hang(stack):
    """Between the gateway and the speech synthesis stage: a slow link, a black hole (open, silent), cut
    connections, then a healthy link again."""
    proxy = await FaultProxy(stack.specs["tts"].port).start()
    env = {"GATEWAY_TTS_ADDRESS": f"127.0.0.1:{proxy.port}", "GATEWAY_REPLY_STALL_S": "4"}
    gateway = await asyncio.to_thread(ExtraGateway, stack, None, env)
    try:
        async with websockets.connect(gateway.url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1}))
            await _until(ws, "ready", [])
            outcome = {}
            for mode in ("delay", "blackhole", "cut", "pass"):
                proxy.set(mode)
                if mode == "pass":  # the link is back: the gateway's channel reconnects within its back-off
                    await _ready(gateway, "tts")
                seen, seconds = await _turn(ws, "What is the capital of France?")
                outcome[mode] = ([e["code"] for e in seen if e["type"] == "error"], round(seconds, 1))
        assert outcome["delay"][0] == [] and outcome["pass"][0] == []
        for mode in ("blackhole", "cut"):
            codes, seconds = outcome[mode]
            assert codes == ["stage_unavailable"] and seconds < 4 + 10, (mode, outcome[mode])
        record("network_faults", f"slow: answered ({outcome['delay'][1]} s to the turn's end); black hole: "
               f"`stage_unavailable` after {outcome['blackhole'][1]} s (`GATEWAY_REPLY_STALL_S`=4 in the test, 15 s "
               f"by default); cut: `stage_unavailable` in {outcome['cut'][1]} s; healthy again: answered "
               f"({outcome['pass'][1]} s)")
    finally:
        gateway.stop()
        await proxy.stop()


async def _ready(gateway: ExtraGateway, stage: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient() as client:
        while (await client.get(f"{gateway.ops}/readyz")).json()["stages"][stage] != "SERVING":
            assert asyncio.get_running_loop().time() < deadline, f"{stage} did not come back"
            await asyncio.sleep(0.5)
