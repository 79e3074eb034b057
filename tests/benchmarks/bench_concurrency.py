"""Several people talking to the avatar at once on this machine: first-frame latency, playback stalls, pictures
shed to stay on time, the text engine's queue, and whether a full box refuses a newcomer (`busy`) rather than
slowing everyone down.

Each session speaks its questions in real time with a voice the models were not built around (tests/voices.py),
the clock started at its last voiced sample, then plays the reply the way the browser does: playback starts
0.12 s (the player's jitter buffer) after the first media message, and every message is due at that start plus
its pts. A message that arrives after it is due is late (the player ran dry). A session waits for its reply to
finish playing before it speaks again, like a person would. One session asks for a story among short questions.
All sessions arrive at once (the hardest case), in JPEG frames with PCM, in H.264 with Opus, and with another
process busy on one core (a noisy neighbour). Each configuration runs its number of runs; the figures pool the
runs, and the spread is the range of the runs' own P50s.
"""

import asyncio
import contextlib
import json
import time

import httpx
import websockets

from services.gateway import media_messages
from tests.benchmarks.report import Section, met, ms, p50, p95
from tests.benchmarks.spoken_client import talk
from tests.noisy_neighbour import busy_core
from tests.voices import UNFAMILIAR, say

JITTER_S = 0.12  # services/gateway/web/src/lib/player.js
TURNS = 2
# label, video and audio codecs, a neighbour busy on one core, session counts, runs of each
CONFIGS = [("jpeg", "jpeg", "linear16", False, (1, 2, 3, 4), 2), ("h264+opus", "h264", "opus", False, (1, 2, 3, 4), 1),
           ("jpeg, one core busy with other work", "jpeg", "linear16", True, (1, 2, 3), 1)]
STORY = "Tell me a story about a brave little boat on the sea."
QUESTIONS = ["Hello! How are you today?", "What is your favourite season?", "Can you tell me a fun fact?",
             "What should I cook tonight?"]
TARGET_RATIO = 1.5  # at 3 sessions, first frame P50 within 1.5x the 1-session figure of the same run


def _question(index: int, turn: int) -> str:
    return STORY if (index, turn) == (1, 0) else QUESTIONS[(index + turn) % len(QUESTIONS)]


async def _session(url: str, index: int, video: str = "jpeg", audio: str = "linear16") -> dict:
    """One person's session in the given codecs: per turn, the first frame, late media messages, pictures and the
    steps shed, and the bytes of video and audio that came with the reply over its seconds of audio."""
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "media": {"video": [video], "audio": [audio]}}))
        while (event := json.loads(await ws.recv()))["type"] != "ready":
            if event["type"] == "error" and event["code"] == "busy":
                return {"refused": True, "turns": []}
        turns = []
        for turn in range(TURNS):
            utterance = say(_question(index, turn), UNFAMILIAR[(index + turn) % len(UNFAMILIAR)])
            marks = {}
            talker = asyncio.create_task(talk(ws, utterance, marks))
            playback_start, late_count, messages, late, first_frame, last_pts = None, 0, 0, 0.0, None, 0.0
            video_bytes = audio_bytes = pictures = shed = 0
            while True:
                raw = await asyncio.wait_for(ws.recv(), 180)
                now = time.perf_counter()
                if isinstance(raw, bytes):
                    item = media_messages.parse(raw)
                    messages += 1
                    if playback_start is None:
                        playback_start = now + JITTER_S
                    due = playback_start + item["pts"]
                    if now > due:
                        late_count += 1
                        late = max(late, now - due)
                    if item["kind"] == "video":
                        pictures += 1
                        if first_frame is None:
                            first_frame = now - marks.get("voiced_end", now)
                    pcm = audio == "linear16" and item["kind"] == "audio"  # else 40 ms: a frame's, or an Opus packet
                    last_pts = max(last_pts, item["pts"] + (len(item["audio"]) / 32000 if pcm else 0.04))
                    video_bytes += len(item.get("image", b""))
                    audio_bytes += len(item["audio"])
                    continue
                event = json.loads(raw)
                if event["type"] == "warning" and event.get("code") == "video_rate" and event["pictures"] != "all":
                    shed += 1
                if event["type"] == "turn_end":
                    break
            await talker
            turns.append({"first_frame": first_frame, "late": late_count, "messages": messages, "worst": late,
                          "llm_first_token": event["latency_ms"].get("llm_first_token"), "seconds": last_pts,
                          "video_bytes": video_bytes, "audio_bytes": audio_bytes, "pictures": pictures, "shed": shed})
            if playback_start is not None:  # listen to the end of the reply before speaking again
                await asyncio.sleep(max(0.0, playback_start + last_pts - time.perf_counter()))
    return {"refused": False, "turns": turns}


def _first_frames(sessions: list[dict]) -> list[float]:
    return [t["first_frame"] for s in sessions for t in s["turns"] if t["first_frame"] is not None]


def _queue_wait(stack) -> tuple[float, float]:
    """The text engine's queue-wait histogram so far: (sum of seconds, count)."""
    text = httpx.get(f"http://127.0.0.1:{stack.specs['llm'].metrics_port}/metrics", timeout=10).text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith(("avatar_llm_queue_wait_seconds_sum", "avatar_llm_queue_wait_seconds_count"))}
    return values.get("avatar_llm_queue_wait_seconds_sum", 0.0), values.get("avatar_llm_queue_wait_seconds_count", 0.0)


def run(stack) -> Section:
    section = Section("Concurrency: simultaneous talking sessions on this machine")
    url = f"ws://{stack.address('gateway')}/ws"
    for name, video, audio, noisy, levels, runs_each in CONFIGS:
        baseline = None
        for level in levels:
            async def together():
                return await asyncio.gather(*(_session(url, i, video, audio) for i in range(level)))

            runs = []
            waited_before, asked_before = _queue_wait(stack)
            with busy_core() if noisy else contextlib.nullcontext():
                for _ in range(runs_each):
                    runs.append(asyncio.run(together()))
            waited, asked = (a - b for a, b in zip(_queue_wait(stack), (waited_before, asked_before)))
            sessions = [s for run in runs for s in run]
            turns = [t for s in sessions for t in s["turns"]]
            refused = sum(s["refused"] for s in sessions)
            frames = _first_frames(sessions)
            run_p50s = [p50(f) for f in map(_first_frames, runs) if f]
            late = sum(t["late"] for t in turns)
            messages = sum(t["messages"] for t in turns)
            tokens = [t["llm_first_token"] / 1000 for t in turns if t["llm_first_token"] is not None]
            label = f"{name}, {level} session{'s' if level > 1 else ''}"
            if level == 1:
                baseline = p50(frames) if frames else None
            verdict = ""
            if level == 3 and frames and baseline:
                verdict = f" ({met(p50(frames), TARGET_RATIO * baseline)})"
            section.add(f"{label}: end of speech → first frame",
                        (f"{ms(p50(frames))} P50, {ms(p95(frames))} P95 ({len(frames)} turns; the runs' P50s "
                         f"{ms(min(run_p50s))}–{ms(max(run_p50s))}){verdict}" if frames else "no frame"),
                        f"P50 ≤ {TARGET_RATIO}× the 1-session figure" if level == 3 else "")
            section.add(f"{label}: late media",
                        f"{late} of {messages} messages (worst {ms(max((t['worst'] for t in turns), default=0))})"
                        f" ({met(late, 0, str)})", "0 for every admitted session")
            seconds = sum(t["seconds"] for t in turns)
            section.add(f"{label}: pictures", f"{sum(t['pictures'] for t in turns) / seconds:.1f} a second of reply; "
                        f"shed in {sum(t['shed'] > 0 for t in turns)} of {len(turns)} replies" if seconds else "no reply")
            section.add(f"{label}: text engine", f"first token {ms(p50(tokens))} P50 after the end of turn; "
                        f"queue wait {ms(waited / asked) if asked else 'n/a'} mean over {asked:.0f} generations"
                        if tokens else "no reply")
            if refused or level == 4:
                section.add(f"{label}: refused with busy", f"{refused} of {level * runs_each}",
                            "a refusal rather than a degraded session, where the box cannot hold 4")
    section.notes.append(f"{TURNS} turns per session, questions spoken in real time, all sessions arriving at once, "
                         f"session 2 asks for a story first; late: a media message arriving after its play time with "
                         f"the browser's {JITTER_S * 1000:.0f} ms jitter buffer; pictures: frames that carried one "
                         f"(25 a second when none is shed). Sessions are admitted up to GATEWAY_MAX_SESSIONS.")
    return section
