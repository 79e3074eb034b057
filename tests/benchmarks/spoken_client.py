"""A WebSocket client that speaks like a person: an utterance in real time, then silence, with the clock started
when its last voiced sample was sent (tests/voices.py), not at the end of the buffer."""

import asyncio
import json
import time

import numpy as np

from services.gateway import media_messages
from services.gateway.stages import OUTPUT_RATE
from tests.speech import to_linear16
from tests.voices import RATE, Utterance

CHUNK_S = 0.1
CHUNK_BYTES = int(RATE * CHUNK_S) * 2
PLAYED_MARGIN_S = 0.3  # a listener's pause after the reply ends, before the next question


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
    """One utterance and what answered it. A pause inside it may end a turn early (the reply to the first part is
    then interrupted by the rest), so the answer is the reply to the utterance's last turn: seconds from the
    voiced end to its end of turn and first frame, how many turns the utterance made, all its final transcripts,
    and the gateway's latency report and speculation for that last turn. It returns once the reply has played to
    its end at the client (from its first media, in real time), as a person waits for the avatar to finish before
    asking on: `turn_end` comes when the last media goes out, seconds before it is heard, and a question asked
    then is speech over the reply."""
    marks: dict = {}
    talker = asyncio.create_task(talk(ws, utterance, marks))
    finals: list[tuple[int, str]] = []
    first_frame, end_of_turn, ended, reasons = {}, {}, {}, {}
    first_media, media_end_s = {}, {}  # by turn: when its first media came, and where its media ends (seconds)
    try:
        while not (talker.done() and finals and (not finals[-1][1] or finals[-1][0] in ended)):
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.perf_counter()
            if isinstance(raw, bytes):
                item = media_messages.parse(raw)
                if item["kind"] == "video":
                    first_frame.setdefault(item["turn"], now)
                first_media.setdefault(item["turn"], now)
                end_s = item["pts"] + len(item["audio"]) / 2 / OUTPUT_RATE
                media_end_s[item["turn"]] = max(media_end_s.get(item["turn"], 0.0), end_s)
                continue
            event = json.loads(raw)
            if event["type"] == "end_of_turn":
                end_of_turn.setdefault(event["turn"], now)
                reasons.setdefault(event["turn"], event["reason"])
            elif event["type"] == "transcript" and event["final"]:
                finals.append((event["turn"], event["text"]))
            elif event["type"] == "turn_end":
                ended[event["turn"]] = event
            elif event["type"] == "error":
                raise RuntimeError(f"the gateway answered with an error: {event}")
        await talker
        if (last := finals[-1][0]) in first_media:
            await asyncio.sleep(max(0.0, first_media[last] + media_end_s[last] - time.perf_counter()) + PLAYED_MARGIN_S)
    finally:
        talker.cancel()
    said = [text for _, text in finals if text]
    last = finals[-1][0]
    result = {"transcript": " ".join(said), "turns": len(said), "latency": {}, "speculated": False,
              "end_reason": reasons.get(last, "")}
    if last in ended:
        result |= {"latency": ended[last]["latency_ms"], "speculated": ended[last]["speculated"],
                   "reply": ended[last]["reply"]}
    for name, times in (("first_frame", first_frame), ("end_of_turn", end_of_turn)):
        if last in times:
            result[name] = times[last] - marks["voiced_end"]
    return result
