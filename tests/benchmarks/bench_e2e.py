"""End to end at the client: end of speech → first audio and first frame, pipelined vs the stages in sequence."""

import asyncio
import contextlib
import json
import subprocess
import time

import grpc
import websockets

from avatar.common.v1 import common_pb2
from avatar.llm.v1 import llm_pb2, llm_pb2_grpc
from avatar.sda.v1 import sda_pb2, sda_pb2_grpc
from avatar.tts.v1 import tts_pb2, tts_pb2_grpc
from services.runner.health import status
from services.runner.redis_server import free_port
from services.runner.topology import GATEWAY, ServiceSpec, command
from tests.benchmarks.latency_plot import plot_turns
from tests.benchmarks.report import Section, ms, p50, p95
from tests.speech import speak, to_linear16
from tests.stack import ROOT

QUESTIONS = [
    "Hello! How are you today?", "What is your name?", "Can you recommend a good book?",
    "What should I cook for dinner?", "Tell me something about the ocean.",
]
TURNS = 20
PLOT = ROOT / "docs" / "latency_breakdown.png"
TRAILING_SILENCE_BYTES = 16000 * 2 * 2  # 2 s of 16-bit silence after each question


async def _pipelined_turn(url: str, question_pcm: bytes) -> dict:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1}))
        while json.loads(await ws.recv())["type"] != "ready":
            pass
        sent = {}

        async def speak_in_real_time():
            for start in range(0, len(question_pcm), 3200):
                await ws.send(question_pcm[start : start + 3200])
                if start + 3200 >= len(question_pcm) - TRAILING_SILENCE_BYTES:
                    sent.setdefault("speech_end", time.perf_counter())  # the last speech sample is out
                await asyncio.sleep(0.1)

        sender = asyncio.create_task(speak_in_real_time())
        marks = {}
        try:
            while True:
                raw = await asyncio.wait_for(ws.recv(), 120)
                now = time.perf_counter()
                if isinstance(raw, bytes):
                    marks.setdefault("first_audio", now)
                    if raw[0] == 2:
                        marks.setdefault("first_frame", now)
                    continue
                event = json.loads(raw)
                if event["type"] == "end_of_turn":
                    marks["end_of_turn"] = now
                if event["type"] == "turn_end":
                    return ({k: v - sent["speech_end"] for k, v in marks.items()}
                            | {"latency": event["latency_ms"], "speculated": event["speculated"]})
        finally:
            sender.cancel()


def _sequential_turn(stack, question: str) -> float:
    """Time to the first frame when each stage finishes before the next starts: the whole LLM reply, then all
    of its speech, then the animation."""
    start = time.perf_counter()
    with grpc.insecure_channel(stack.address("llm")) as channel:
        reply = "".join(r.delta for r in llm_pb2_grpc.LlmServiceStub(channel).Generate(
            llm_pb2.GenerateRequest(user_text=question), timeout=60))
    with grpc.insecure_channel(stack.address("tts")) as channel:
        audio = b"".join(r.audio.pcm for r in tts_pb2_grpc.TtsServiceStub(channel).StreamingSynthesize(iter([
            tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(sample_rate_hz=16000)),
            tts_pb2.SynthesizeRequest(text=reply)]), timeout=60) if r.WhichOneof("result") == "audio")
    fmt = common_pb2.AudioFormat(sample_rate_hz=16000, encoding=common_pb2.LINEAR16, channels=1)
    with grpc.insecure_channel(stack.address("sda")) as channel:
        requests = [sda_pb2.AnimateRequest(config=sda_pb2.AnimateConfig(audio_format=fmt))]
        requests += [sda_pb2.AnimateRequest(audio=audio[i : i + 6400]) for i in range(0, len(audio), 6400)]
        requests.append(sda_pb2.AnimateRequest(end_of_segment=sda_pb2.EndOfSegment()))
        for response in sda_pb2_grpc.SdaServiceStub(channel).StreamingAnimate(iter(requests), timeout=120):
            if response.WhichOneof("result") == "frame":
                return time.perf_counter() - start  # the first frame, after every earlier stage finished
    raise AssertionError("no frame")


@contextlib.contextmanager
def _gateway_without_speculation(stack):
    port = free_port()
    env = dict(stack.env(), GATEWAY_PORT=str(port), GATEWAY_SPECULATION="false")
    process = subprocess.Popen(command(GATEWAY), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spec = ServiceSpec("gateway", port, port, grpc=False)
    try:
        while status(spec) != "SERVING":
            time.sleep(0.2)
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        process.terminate()
        process.wait(timeout=15)


def run(stack) -> Section:
    section = Section(f"End to end ({TURNS} turns, one session at a time, WebSocket client on this machine)")
    url = f"ws://{stack.address('gateway')}/ws"
    pcm = {q: to_linear16(speak(q)) + b"\0" * TRAILING_SILENCE_BYTES for q in QUESTIONS}
    results = [asyncio.run(_pipelined_turn(url, pcm[QUESTIONS[i % len(QUESTIONS)]])) for i in range(TURNS)]
    with _gateway_without_speculation(stack) as plain_url:
        plain = [asyncio.run(_pipelined_turn(plain_url, pcm[QUESTIONS[i % len(QUESTIONS)]])) for i in range(TURNS // 2)]
    audio = [r["first_audio"] for r in results]
    frame = [r["first_frame"] for r in results if "first_frame" in r]
    eot = [r["end_of_turn"] for r in results]
    # The pipeline's work after the end of turn vs the same work done stage after stage.
    pipelined = [r["first_frame"] - r["end_of_turn"] for r in results if "first_frame" in r]
    sequential = [_sequential_turn(stack, QUESTIONS[i % len(QUESTIONS)]) for i in range(len(QUESTIONS))]
    section.add("end of speech → end of turn (the silence rule)", f"{ms(p50(eot))} P50")
    section.add("end of speech → first audio at the client", f"{ms(p50(audio))} P50, {ms(p95(audio))} P95", "≤ 1.0 s P50")
    section.add("end of speech → first frame at the client", f"{ms(p50(frame))} P50, {ms(p95(frame))} P95", "≤ 1.0 s P50")
    section.add("end of turn → first frame, pipelined ÷ stages in sequence",
                f"{p50(pipelined) / p50(sequential):.2f} ({ms(p50(pipelined))} vs {ms(p50(sequential))})", "≤ 0.35")
    speculated = sum(1 for r in results if r["speculated"])
    section.add("speculation: turns whose early LLM start was kept", f"{speculated} of {len(results)}")
    section.add("end of speech → first frame without speculation",
                f"{ms(p50([r['first_frame'] for r in plain]))} P50 (with: {ms(p50(frame))})")
    for key in ("llm_first_token", "tts_first_audio", "first_frame"):
        values = [r["latency"][key] / 1000 for r in results if key in r["latency"]]
        section.add(f"gateway: end of turn → {key.replace('_', ' ')}", f"{ms(p50(values))} P50")
    breakdown = [{"end_of_turn": r["end_of_turn"], "first_frame": r.get("first_frame", r["first_audio"]),
                  **{k: r["end_of_turn"] + r["latency"][k] / 1000 for k in ("llm_first_token", "tts_first_audio")
                     if k in r["latency"]}} for r in results]
    plot_turns(breakdown, PLOT)
    section.notes.append(f"![per-turn latency breakdown]({PLOT.name}) — from the gateway's turn spans "
                         "(LLM first token, TTS first audio) and the client's clock (end of turn, first frame).")
    section.notes.append("End of speech is when the last speech chunk was sent; the user's 500 ms end-of-turn "
                         "silence is part of every figure measured from it.")
    return section
