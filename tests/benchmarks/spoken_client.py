"""A WebSocket client that speaks like a person: an utterance in real time, then silence, with the clock started
when its last voiced sample was sent (tests/voices.py), not at the end of the buffer."""

import asyncio
import json
import time

import numpy as np

from tests.speech import to_linear16
from tests.voices import RATE, Utterance

CHUNK_S = 0.1
CHUNK_BYTES = int(RATE * CHUNK_S) * 2


async def open_session(url: str, **settings):
    import websockets

    ws = await websockets.connect(url, max_size=None)
    await ws.send(json.dumps({"type": "hello", "version": 1, "audio": {"sample_rate": RATE}, "settings": settings}))
    while json.loads(await ws.recv())["type"] != "ready":
        pass
    return ws


async def talk(ws, utterance: Utterance, marks: dict, trailing_s: float = 2.0) -> None:
    """Send the utterance and `trailing_s` of silence in real time; marks["voiced_end"] = when the chunk holding
    the last voiced sample went out."""
    pcm = to_linear16(np.concatenate([utterance.samples, np.zeros(int(trailing_s * RATE), np.float32)]))
    voiced_end_byte = int(utterance.voiced_end_s * RATE) * 2
    for start in range(0, len(pcm), CHUNK_BYTES):
        await ws.send(pcm[start : start + CHUNK_BYTES])
        if start + CHUNK_BYTES >= voiced_end_byte:
            marks.setdefault("voiced_end", time.perf_counter())
        await asyncio.sleep(CHUNK_S)


async def spoken_turn(ws, utterance: Utterance) -> dict:
    """One turn: seconds from the voiced end to the end of turn, first audio and first frame; the final
    transcript; the gateway's own latency report and whether its speculation was kept."""
    marks: dict = {}
    talker = asyncio.create_task(talk(ws, utterance, marks))
    times, transcript = {}, ""
    try:
        while True:
            raw = await asyncio.wait_for(ws.recv(), 180)
            now = time.perf_counter()
            if isinstance(raw, bytes):
                times.setdefault("first_audio", now)
                if raw[0] == 2:
                    times.setdefault("first_frame", now)
                continue
            event = json.loads(raw)
            if event["type"] == "end_of_turn":
                times.setdefault("end_of_turn", now)
            elif event["type"] == "transcript" and event["final"]:
                transcript = event["text"]
                if not transcript:  # nothing recognised: no reply will come
                    await talker
                    return {"transcript": "", "latency": {}, "speculated": False}
            elif event["type"] == "error":
                raise RuntimeError(f"the gateway answered with an error: {event}")
            elif event["type"] == "turn_end":
                await talker
                return ({k: v - marks["voiced_end"] for k, v in times.items()}
                        | {"transcript": transcript, "reply": event["reply"], "latency": event["latency_ms"],
                           "speculated": event["speculated"]})
    finally:
        talker.cancel()
