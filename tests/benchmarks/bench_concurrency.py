"""Several people talking to the avatar at once on this machine: first-frame latency and playback stalls.

Each session speaks its question in real time with a voice the models were not built around (tests/voices.py),
the clock started at its last voiced sample, then plays the reply the way the browser does: playback starts
0.12 s (the player's jitter buffer) after the first media message, and every message is due at that start plus
its pts. A message that arrives after it is due is a stall (the player ran dry). A session waits for its reply
to finish playing before it speaks again, like a person would.
"""

import asyncio
import json
import time

import websockets

from services.gateway import media
from tests.benchmarks.report import Section, met, ms, p50, p95
from tests.benchmarks.spoken_client import talk
from tests.voices import UNFAMILIAR, say

JITTER_S = 0.12  # services/gateway/web/src/lib/player.js
LEVELS = (1, 2, 3, 4)
TURNS = 2
QUESTIONS = ["Hello! How are you today?", "What is your favourite season?", "Can you tell me a fun fact?",
             "What should I cook tonight?"]


async def _session(url: str, index: int) -> list[dict]:
    results = []
    await asyncio.sleep(0.4 * index)  # people do not start in the same instant
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1}))
        while json.loads(await ws.recv())["type"] != "ready":
            pass
        for turn in range(TURNS):
            utterance = say(QUESTIONS[(index + turn) % len(QUESTIONS)], UNFAMILIAR[(index + turn) % len(UNFAMILIAR)])
            marks = {}
            talker = asyncio.create_task(talk(ws, utterance, marks))
            playback_start, stalls, messages, late, first_frame, last_pts = None, 0, 0, 0.0, None, 0.0
            while True:
                raw = await asyncio.wait_for(ws.recv(), 180)
                now = time.perf_counter()
                if isinstance(raw, bytes):
                    item = media.parse(raw)
                    messages += 1
                    if playback_start is None:
                        playback_start = now + JITTER_S
                    due = playback_start + item["pts"]
                    if now > due:
                        stalls += 1
                        late = max(late, now - due)
                    if item["kind"] == "video" and first_frame is None:
                        first_frame = now - marks.get("voiced_end", now)
                    last_pts = max(last_pts, item["pts"] + len(item["pcm"]) / 32000)
                    continue
                if json.loads(raw)["type"] == "turn_end":
                    break
            await talker
            results.append({"first_frame": first_frame, "stalls": stalls, "messages": messages, "late": late})
            if playback_start is not None:  # listen to the end of the reply before speaking again
                await asyncio.sleep(max(0.0, playback_start + last_pts - time.perf_counter()))
    return results


def run(stack) -> Section:
    section = Section("Concurrency: simultaneous talking sessions on this machine")
    url = f"ws://{stack.address('gateway')}/ws"
    for level in LEVELS:
        async def together():
            return await asyncio.gather(*(_session(url, i) for i in range(level)))

        turns = [t for session in asyncio.run(together()) for t in session]
        frames = [t["first_frame"] for t in turns if t["first_frame"] is not None]
        stalls = sum(t["stalls"] for t in turns)
        messages = sum(t["messages"] for t in turns)
        section.add(f"{level} session{'s' if level > 1 else ''}: end of speech → first frame",
                    f"{ms(p50(frames))} P50, {ms(p95(frames))} P95" if frames else "no frame")
        section.add(f"{level} session{'s' if level > 1 else ''}: playback stalls",
                    f"{stalls} of {messages} media messages late (worst {ms(max(t['late'] for t in turns))})"
                    + (f" ({met(stalls, 0, str)})" if level == 3 else ""),
                    "0 at 3 sessions" if level == 3 else "")
    section.notes.append(f"{TURNS} turns per session, questions spoken in real time; a stall is a media message "
                         f"arriving after its play time with the browser's {JITTER_S * 1000:.0f} ms jitter buffer.")
    return section
