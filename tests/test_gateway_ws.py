"""The gateway's WebSocket with a real client, real Redis and the real ASR process."""

import asyncio
import json

import pytest
import websockets

from tests.grpc_helpers import with_silence
from tests.speech import speak, to_linear16, wer

pytestmark = pytest.mark.e2e


async def next_event(ws, kind, timeout=60):
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["type"] == kind:
            return message


async def test_spoken_audio_comes_back_as_a_transcript_and_bad_frames_are_survived(stack):
    url = f"ws://{stack.address('gateway')}/ws"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "audio": {"sample_rate": 16000}}))
        ready = await next_event(ws, "ready")
        assert ready["stages"]["asr"] == "SERVING" and ready["session_id"]

        await ws.send(b"\x01\x02\x03")  # half a sample: refused, session goes on
        error = await next_event(ws, "error")
        assert error["code"] == "bad_message" and not error["fatal"]
        await ws.send("{not json")
        assert (await next_event(ws, "error"))["code"] == "bad_message"

        sentence = "Could you please send me the report before the meeting tomorrow morning?"
        pcm = to_linear16(with_silence(speak(sentence)))
        for start in range(0, len(pcm), 3200):
            await ws.send(pcm[start : start + 3200])
        assert (await next_event(ws, "speech_start"))["turn"] == 0
        final = None
        while final is None:
            event = await next_event(ws, "transcript")
            final = event if event["final"] else None
        assert wer([(sentence, final["text"])]) <= 0.15

    # The session and its history are in Redis: a new connection resumes it.
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "session_id": ready["session_id"]}))
        assert (await next_event(ws, "ready"))["session_id"] == ready["session_id"]


async def test_wrong_token_and_version_are_refused(stack):
    url = f"ws://{stack.address('gateway')}/ws"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 99}))
        error = await next_event(ws, "error")
        assert error["code"] == "unsupported_version" and error["fatal"]
    async with websockets.connect(url) as ws:
        await ws.send(b"\0\0" * 100)
        assert (await next_event(ws, "error"))["code"] == "not_ready"
