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
import re
import time

import httpx
import websockets

from services.common.priority_turns import CLIENT_JITTER_S as JITTER_S
from services.gateway import media_messages
from tests.benchmarks.report import Section, met, ms, p50, p95
from tests.benchmarks.spoken_client import talk
from tests.noisy_neighbour import busy_core
from tests.stack import ExtraGateway
from tests.voices import UNFAMILIAR, say

TURNS = 2
# label, video and audio codecs, a neighbour busy on one core, session counts, runs of each
CONFIGS = [("jpeg", "jpeg", "linear16", False, (1, 2, 3, 4), 2), ("h264+opus", "h264", "opus", False, (1, 2, 3, 4), 1),
           ("jpeg, one core busy with other work", "jpeg", "linear16", True, (1, 2, 3), 1)]
STORY = "Tell me a story about a brave little boat on the sea."
QUESTIONS = ["Hello! How are you today?", "What is your favourite season?", "Can you tell me a fun fact?",
             "What should I cook tonight?"]
ADMISSION = {"GATEWAY_PREDICT_CAPACITY": "true", "GATEWAY_LEARN_CAPACITY": "true", "GATEWAY_MAX_SESSIONS": "4"}
WINDOW_S = 2.0  # the gateway reads its machine's load this often (services/gateway/app.py)
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
            turns.append(await _spoken_turn(ws, utterance, audio))
            if turns[-1]["ends_at"] is not None:  # listen to the end of the reply before speaking again
                await asyncio.sleep(max(0.0, turns[-1]["ends_at"] - time.perf_counter()))
    return {"refused": False, "turns": turns}


async def _spoken_turn(ws, utterance, audio: str) -> dict:
    """One question and the replies it got (a pause inside it may end a turn early: the reply to the first part
    is then interrupted by the rest), each played from its own first media message: the first frame of the
    reply to the question's last turn, late messages, pictures and steps shed, bytes, and when it ends playing."""
    marks: dict = {}
    talker = asyncio.create_task(talk(ws, utterance, marks))
    replies: dict[int, dict] = {}
    finals: list[tuple[int, str]] = []
    ended: dict[int, dict] = {}
    shed = 0
    while not (talker.done() and finals and (not finals[-1][1] or finals[-1][0] in ended)):
        try:
            raw = await asyncio.wait_for(ws.recv(), 0.5)
        except TimeoutError:
            continue
        now = time.perf_counter()
        if isinstance(raw, bytes):
            item = media_messages.parse(raw)
            reply = replies.setdefault(item["turn"], {"start": now + JITTER_S, "late": 0, "worst": 0.0, "messages": 0,
                                                      "first_frame": None, "pictures": 0, "seconds": 0.0,
                                                      "video_bytes": 0, "audio_bytes": 0})
            reply["messages"] += 1
            due = reply["start"] + item["pts"]
            if now > due:
                reply["late"] += 1
                reply["worst"] = max(reply["worst"], now - due)
            if item["kind"] == "video":
                reply["pictures"] += bool(item["image"])
                if reply["first_frame"] is None:
                    reply["first_frame"] = now
            pcm = audio == "linear16" and item["kind"] == "audio"  # else 40 ms: a frame's, or an Opus packet
            reply["seconds"] = max(reply["seconds"], item["pts"] + (len(item["audio"]) / 32000 if pcm else 0.04))
            reply["video_bytes"] += len(item.get("image", b""))
            reply["audio_bytes"] += len(item["audio"])
            continue
        event = json.loads(raw)
        if event["type"] == "transcript" and event["final"]:
            finals.append((event["turn"], event["text"]))
        elif event["type"] == "turn_end":
            ended[event["turn"]] = event
        elif event["type"] == "warning" and event.get("code") == "video_rate" and event["pictures"] != "all":
            shed += 1
    await talker
    last = replies.get(finals[-1][0], {})
    first_frame = last.get("first_frame")
    return {"first_frame": first_frame - marks["voiced_end"] if first_frame else None,
            "late": sum(r["late"] for r in replies.values()), "messages": sum(r["messages"] for r in replies.values()),
            "worst": max((r["worst"] for r in replies.values()), default=0.0),
            "llm_first_token": ended.get(finals[-1][0], {}).get("latency_ms", {}).get("llm_first_token"),
            "seconds": sum(r["seconds"] for r in replies.values()),
            "pictures": sum(r["pictures"] for r in replies.values()), "shed": shed,
            "video_bytes": sum(r["video_bytes"] for r in replies.values()),
            "audio_bytes": sum(r["audio_bytes"] for r in replies.values()),
            "turns": len(finals), "ends_at": last["start"] + last["seconds"] if last else None}


def _first_frames(sessions: list[dict]) -> list[float]:
    return [t["first_frame"] for s in sessions for t in s["turns"] if t["first_frame"] is not None]


def _queue_wait(stack) -> tuple[float, float]:
    """The text engine's queue-wait histogram so far: (sum of seconds, count)."""
    text = httpx.get(f"http://127.0.0.1:{stack.specs['llm'].metrics_port}/metrics", timeout=10).text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith(("avatar_llm_queue_wait_seconds_sum", "avatar_llm_queue_wait_seconds_count"))}
    return values.get("avatar_llm_queue_wait_seconds_sum", 0.0), values.get("avatar_llm_queue_wait_seconds_count", 0.0)


def _admission(gateway: ExtraGateway) -> dict:
    return httpx.get(f"{gateway.ops}/readyz", timeout=10).json()["sessions"]


def _gauge(gateway: ExtraGateway, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", httpx.get(f"{gateway.ops}/metrics", timeout=10).text, re.M)
    return float(found.group(1)) if found else None


def run(stack) -> Section:
    section = Section("Concurrency: simultaneous talking sessions on this machine, admitted as shipped")
    for name, video, audio, noisy, levels, runs_each in CONFIGS:
        baseline = None
        with busy_core() if noisy else contextlib.nullcontext():
            gateway = ExtraGateway(stack, None, ADMISSION)
            try:
                time.sleep(3 * WINDOW_S)  # the machine's base load read (a neighbour's work included)
                for level in levels:
                    first_frame = _level(section, stack, gateway, name, video, audio, level, runs_each, baseline)
                    baseline = first_frame if level == 1 else baseline
                cost, base = _gauge(gateway, "avatar_gateway_reply_cpu_seconds"), _gauge(
                    gateway, "avatar_gateway_machine_base_cores")
                section.add(f"{name}: what the gateway measured", f"a second of reply costs {cost:.2f} core-seconds; "
                            f"{base:.2f} cores busy without replies; predicts {_admission(gateway)['predicted']} "
                            "conversations")
            finally:
                gateway.stop()
    section.notes.append(f"{TURNS} questions per session, spoken in real time, all sessions arriving at once, "
                         f"session 2 asks for a story first; late: a media message arriving after its play time with "
                         f"the browser's {JITTER_S * 1000:.0f} ms jitter buffer; pictures: frames that carried one "
                         f"(25 a second when none is shed). Each configuration runs on a gateway of its own with the "
                         f"shipped admission (the machine's measured load and late media; ceiling "
                         f"{ADMISSION['GATEWAY_MAX_SESSIONS']}), the levels in order, so what a level measured "
                         f"admits the next; a question heard as two turns counts both replies.")
    return section


def _level(section: Section, stack, gateway: ExtraGateway, name: str, video: str, audio: str, level: int,
           runs_each: int, baseline: float | None) -> float | None:
    """One level's rows; the first frame's P50 (None: no frame)."""

    async def together():
        return await asyncio.gather(*(_session(gateway.url, i, video, audio) for i in range(level)))

    runs = []
    waited_before, asked_before = _queue_wait(stack)
    for _ in range(runs_each):
        runs.append(asyncio.run(together()))
        time.sleep(WINDOW_S)
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
    verdict = ""
    if level == 3 and frames and baseline:
        verdict = f" ({met(p50(frames), TARGET_RATIO * baseline)})"
    section.add(f"{label}: admitted / refused with busy", f"{level * runs_each - refused} / {refused}")
    if not turns:
        return None
    section.add(f"{label}: end of speech → first frame",
                (f"{ms(p50(frames))} P50, {ms(p95(frames))} P95 ({len(frames)} replies; the runs' P50s "
                 f"{ms(min(run_p50s))}–{ms(max(run_p50s))}){verdict}" if frames else "no frame"),
                f"P50 ≤ {TARGET_RATIO}× the 1-session figure" if level == 3 else "")
    section.add(f"{label}: late media",
                f"{late} of {messages} messages (worst {ms(max((t['worst'] for t in turns), default=0))}) "
                f"({met(late, 0, str)})", "0 for every admitted session")
    seconds = sum(t["seconds"] for t in turns)
    split = sum(t["turns"] > 1 for t in turns)
    section.add(f"{label}: pictures", f"{sum(t['pictures'] for t in turns) / seconds:.1f} a second of reply; "
                f"shed in {sum(t['shed'] > 0 for t in turns)} of {len(turns)} questions' replies"
                + (f"; {split} questions heard as two turns" if split else "") if seconds else "no reply")
    section.add(f"{label}: text engine", f"first token {ms(p50(tokens))} P50 after the end of turn; "
                f"queue wait {ms(waited / asked) if asked else 'n/a'} mean over {asked:.0f} generations"
                if tokens else "no reply")
    return p50(frames) if frames else None
