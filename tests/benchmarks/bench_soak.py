"""The soak: one conversation through /ws for BENCH_SOAK_MINUTES (30) in real time — a question every ~20 s in
the unfamiliar voices (tests/voices.py), every fourth one cut short by the user speaking over the reply — then
errors, memory per process (its slope once warm), the first frame in the first and the last five minutes (with the gateway's
own marks for each stage and the replies' length, to say where any drift comes from), the share of prompt tokens
the text engine reused, and whether audio and video still share one clock at the end. Not part of CI:
`python -m tests.benchmarks soak`."""

import asyncio
import json
import os
import time

import httpx
import numpy as np

from services.gateway import media_messages
from tests.benchmarks.bench_e2e import QUESTIONS
from tests.benchmarks.report import Section, met, ms, p50, p95
from tests.benchmarks.spoken_client import open_session, talk
from tests.voices import UNFAMILIAR, say

TURN_EVERY_S = 20.0
WINDOW_S = 300.0  # first and last five minutes
FLAT_MB_PER_H = 50.0  # "flat" memory: a slope within this
WARM_UP_S = 600.0  # caches and buffers fill to their bounds (the text engine's context grows with the history)
DRIFT = 0.10  # "no drift": the last five minutes' P50 first frame within 10% of the first five minutes'
MARKS = ("llm_first_token", "tts_first_audio", "first_frame")  # the gateway's, from its end of turn


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _slope_mb_per_h(samples: list[tuple[float, float]]) -> float:
    t, rss = np.array(samples).T
    return float(np.polyfit(t / 3600, rss, 1)[0]) if len(samples) > 2 else 0.0


def _prompt_tokens(stack) -> dict[str, float]:
    """The text engine's prompt tokens so far, reused and evaluated (its Prometheus counter)."""
    text = httpx.get(f"http://127.0.0.1:{stack.specs['llm'].metrics_port}/metrics", timeout=10).text
    counts = {"reused": 0.0, "evaluated": 0.0}
    for line in text.splitlines():
        if line.startswith("avatar_llm_prompt_tokens_total{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            counts[kind] = float(line.rsplit(" ", 1)[1])
    return counts


async def _soak(stack, seconds: float) -> dict:
    url = f"ws://{stack.address('gateway')}/ws"
    ws = await open_session(url)
    started = time.monotonic()
    errors: list[dict] = []
    first_frames: list[tuple[float, float]] = []  # (time into the soak, seconds from the voiced end)
    rss: dict[str, list[tuple[float, float]]] = {name: [] for name in stack.processes}
    last_turn_media: dict[int, list[dict]] = {}
    turn_ends: list[tuple[float, dict]] = []  # (time into the soak, the turn_end event)
    tokens_before = _prompt_tokens(stack)
    turns = barge_ins = 0
    while time.monotonic() - started < seconds:
        turn_started = time.monotonic()
        voice = UNFAMILIAR[turns % len(UNFAMILIAR)]
        marks: dict = {}
        # the question is spoken while the socket is read: each message is timed when it arrives
        speaking = [asyncio.create_task(talk(ws, say(QUESTIONS[turns % len(QUESTIONS)], voice), marks, 1.0))]
        barge = turns % 4 == 3
        first, answered = None, None  # the first frame, of the turn the question's end of turn opened
        deadline = time.monotonic() + TURN_EVERY_S
        while time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(ws.recv(), max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                break
            if isinstance(raw, bytes):
                item = media_messages.parse(raw)
                last_turn_media.setdefault(item["turn"], []).append(item)
                if first is None and item["kind"] == "video" and item["turn"] == answered:
                    first = time.perf_counter() - marks["voiced_end"]
                    first_frames.append((time.monotonic() - started, first))
                    if barge:  # the user speaks over the reply as soon as it shows
                        speaking.append(asyncio.create_task(
                            talk(ws, say("Wait, stop, tell me something else.", voice), {}, trailing_s=1.0)))
                        barge_ins += 1
                continue
            event = json.loads(raw)
            if event["type"] == "error":
                errors.append(event)
            elif event["type"] == "turn_end":
                turn_ends.append((time.monotonic() - started, event))
            elif event["type"] == "transcript" and event["final"] and event["text"] and "voiced_end" in marks:
                answered = answered if answered is not None else event["turn"]
        await asyncio.gather(*speaking)
        for name, process in stack.processes.items():
            rss[name].append((time.monotonic() - started, _rss_mb(process.pid)))
        turns += 1
        await asyncio.sleep(max(0.0, TURN_EVERY_S - (time.monotonic() - turn_started)))
    await ws.close()
    tokens = {kind: count - tokens_before[kind] for kind, count in _prompt_tokens(stack).items()}
    return {"seconds": time.monotonic() - started, "turns": turns, "barge_ins": barge_ins, "errors": errors,
            "first_frames": first_frames, "turn_ends": turn_ends, "prompt_tokens": tokens, "rss": rss,
            "media": last_turn_media}


def _window_rows(section: Section, result: dict) -> None:
    """Per stage, and the replies' length, in the first and the last five minutes."""
    windows = {"first": [e for t, e in result["turn_ends"] if t < WINDOW_S],
               "last": [e for t, e in result["turn_ends"] if t > result["seconds"] - WINDOW_S]}
    for mark in MARKS:
        cells = []
        for name, events in windows.items():
            values = [e["latency_ms"][mark] / 1000 for e in events if mark in e.get("latency_ms", {})]
            cells.append(f"{name} {ms(p50(values))} P50 / {ms(p95(values))} P95" if values else f"{name}: none")
        section.add(f"end of turn → {mark.replace('_', ' ')}", "; ".join(cells))
    words = {name: [len(e["reply"].split()) for e in events] for name, events in windows.items()}
    if all(words.values()):
        section.add("reply length", "; ".join(f"{name} {p50(w):.0f} words P50" for name, w in words.items()))


def _offset_ms(media_of_turn: list[dict]) -> float:
    """How far the audio carried by a turn's frames ends from where its video ends (0: one clock)."""
    frames = [m for m in media_of_turn if m["kind"] == "video"]
    if not frames:
        return float("nan")
    audio_s = sum(len(f["audio"]) for f in frames) / 32000
    video_s = frames[-1]["pts"] + 0.04 - frames[0]["pts"]
    return (audio_s - video_s) * 1000


def run(stack) -> Section:
    minutes = float(os.environ.get("BENCH_SOAK_MINUTES", "30"))
    result = asyncio.run(_soak(stack, minutes * 60))
    section = Section(f"Soak: one {result['seconds'] / 60:.0f}-minute conversation in real time, a question every "
                      f"{TURN_EVERY_S:.0f} s, {len(UNFAMILIAR)} unfamiliar voices, every fourth reply barged in on")
    section.add("turns / barge-ins", f"{result['turns']} / {result['barge_ins']}")
    section.add("error events", f"{len(result['errors'])} ({met(len(result['errors']), 0, str)})", "0")
    early = [f for t, f in result["first_frames"] if t < WINDOW_S]
    late = [f for t, f in result["first_frames"] if t > result["seconds"] - WINDOW_S]
    if early:
        section.add("voiced end → first frame, first five minutes",
                    f"{ms(p50(early))} P50 / {ms(p95(early))} P95 ({len(early)} turns)")
    if early and late:
        drift = met(p50(late), p50(early) * (1 + DRIFT))
        section.add("voiced end → first frame, last five minutes",
                    f"{ms(p50(late))} P50 / {ms(p95(late))} P95 ({len(late)} turns; {drift})",
                    f"no drift: P50 within {DRIFT:.0%} of the first five minutes'")
    _window_rows(section, result)
    tokens = result["prompt_tokens"]
    if total := tokens["reused"] + tokens["evaluated"]:
        section.add("text engine prompt tokens reused", f"{tokens['reused'] / total:.0%} of {total:.0f}")
    for name, samples in result["rss"].items():
        settled = [(t, mb) for t, mb in samples if t >= WARM_UP_S]
        if len(settled) > 2:
            slope = _slope_mb_per_h(settled)
            flat = met(abs(slope), FLAT_MB_PER_H, lambda v: f"{v:.0f} MB/h")
            section.add(f"{name} resident memory",
                        f"{samples[0][1]:.0f} → {settled[0][1]:.0f} ({WARM_UP_S / 60:.0f} min) → {samples[-1][1]:.0f} MB"
                        f"; slope after the first {WARM_UP_S / 60:.0f} minutes {slope:+.0f} MB/h ({flat}), over the "
                        f"whole run {_slope_mb_per_h(samples):+.0f} MB/h",
                        f"flat once warm: within ±{FLAT_MB_PER_H:.0f} MB/h")
    last = max(result["media"]) if result["media"] else None
    if last is not None:
        offset = _offset_ms(result["media"][last])
        section.add("audio vs video at the end (last turn)",
                    f"{offset:.1f} ms ({met(abs(offset), 0, lambda v: f'{v:.1f} ms')})", "0 ms")
    if result["errors"]:
        section.notes.append("errors: " + "; ".join(f"{e['code']}: {e['message']}" for e in result["errors"][:5]))
    return section
