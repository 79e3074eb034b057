"""Media through impaired networks, over the WebSocket and over WebRTC side by side.

A gateway on this machine; a client (tests/benchmarks/link_client.py, Python: aiortc for WebRTC) in a network
namespace whose only way out is a link shaped like a real network (tests/impaired_link.py: delay, jitter, loss,
rate, both ways; shaped in user space, as this kernel has no netem). The bench creates the namespace for each link
and removes it. For each link and transport, the same spoken questions: end of speech → first frame, the picture
freezing (over 200 ms) while the reply plays, late frames (WebSocket), audio/video offset at the client
(WebRTC), bits per second. And the browser app in headless Chromium over WebRTC (browser_link_client.py), where
the browser matters: Chromium's own freezes, jitter buffers, concealed audio and retransmissions.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from tests.benchmarks.report import Section, met, p50
from tests.impaired_link import ImpairedLink, LinkShape
from tests.speech import speak
from tests.stack import ROOT, ExtraGateway

LINKS = {
    "clean": LinkShape(),
    "50 ms ± 10": LinkShape(delay_ms=25, jitter_ms=5),
    "150 ms, 1% loss": LinkShape(delay_ms=75, loss=0.01),
    "3% loss in bursts": LinkShape(delay_ms=20, loss=0.03, burst=3),
    "1 Mbit/s": LinkShape(delay_ms=10, rate_kbps=1000),
}
QUESTIONS = ("Hello! What is your name?", "What colour is the sky?")
TOKEN = "bench-network-token"
MAX_LIP_OFFSET_MS = 45  # where a viewer starts to notice (broadcast practice)
TARGET = {"websocket": "no freeze over 200 ms; first frame ≤ 1.5× clean",
          # freezes over WebRTC are judged in the browser (the Python client asks for a lost packet only once)
          "webrtc": "lips ≤ 45 ms from the voice; first frame ≤ 1.5× clean"}


def _ask(link: ImpairedLink, client: str, *args: str) -> dict | None:
    """One question from a client module of tests.benchmarks run inside the link's namespace: what it saw, and the
    bits a second the link carried to it while the reply played."""
    before = link.bytes_to_client
    done = link.run([sys.executable, "-m", f"tests.benchmarks.{client}", *args], cwd=ROOT, capture_output=True,
                    text=True, timeout=240)
    if done.returncode:
        print(f"{client} failed: {done.stderr[-2000:]}", flush=True)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result | {"kbps": (link.bytes_to_client - before) * 8 / max(result["reply_s"], 1.0) / 1000}


def _browser_summary(runs: list[dict], link: str) -> str:
    if not runs:
        return "the browser failed (see the bench log)"
    freezes = sum(r["freezes"] for r in runs)
    judged = f", {met(freezes, 0, lambda v: f'{v:.0f}')}" if link.startswith("150") else ""
    return (f"Chromium's own count: {freezes} freezes ({sum(r['freeze_s'] for r in runs):.1f} s in all{judged}) in "
            f"{sum(r['frames'] for r in runs)} frames decoded; its jitter buffers held video "
            f"{p50([r['video_buffer_ms'] for r in runs]):.0f} ms, audio {p50([r['audio_buffer_ms'] for r in runs]):.0f} "
            f"ms; {100 * max(r['concealed'] for r in runs):.1f}% of the audio concealed, "
            f"{sum(r['nacks'] for r in runs)} retransmissions asked; {p50([r['kbps'] for r in runs]):.0f} kbit/s "
            "on the link")


def run(stack) -> Section:
    section = Section("Network: the WebSocket and WebRTC through impaired links")
    gateway = ExtraGateway(stack, env={"GATEWAY_HOST": "0.0.0.0", "GATEWAY_AUTH_TOKEN": TOKEN})
    clean_first: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wavs = []
            for i, question in enumerate(QUESTIONS):
                wavs.append(Path(tmp) / f"q{i}.wav")
                soundfile.write(wavs[-1], np.concatenate([np.zeros(4800, np.float32), speak(question)]), 16000)
            for name, shape in LINKS.items():
                with ImpairedLink(shape) as link:
                    address = f"{link.host}:{gateway.port}"
                    for transport in ("websocket", "webrtc"):
                        runs = [r for r in (_ask(link, "link_client", address, transport, TOKEN, str(wav))
                                            for wav in wavs) if r]
                        target = TARGET[transport] if name.startswith("150") else ""
                        section.add(f"{name} ({shape.describe()}), {transport}",
                                    _summary(runs, name, transport, clean_first), target)
                    runs = [r for r in (_ask(link, "browser_link_client", address, TOKEN, str(wav)) for wav in wavs)
                            if r]
                    section.add(f"{name} ({shape.describe()}), webrtc in Chromium", _browser_summary(runs, name),
                                "no freeze" if name.startswith("150") else "")
    finally:
        gateway.stop()
    section.notes.append(f"Questions: {'; '.join(QUESTIONS)} (Piper's voice), one run each per link and transport. "
                         "Targets on 150 ms / 1% loss: no freeze over 200 ms, lips within 45 ms of the voice, first "
                         "frame ≤ 1.5× the clean link's.")
    section.notes.append("The links are shaped in user space (tests/impaired_link.py: a TUN device in a network "
                         "namespace, a forwarder that delays, drops and rate-limits its packets), as this kernel has no "
                         "netem; a Python client (aiortc for WebRTC, no browser jitter buffer: its A/V offset is "
                         "what arrives, before any lip-sync a browser adds: each frame's arrival against its RTP "
                         "timestamp from its track's first frame of the reply, the video's median less the audio's). "
                         "The client buffers as a browser does, not as aiortc by default: its audio plays each packet "
                         "as it comes and gives a lost one up after three more (the gateway's own microphone buffer; "
                         "aiortc's holds four packets, and after a loss sixteen for good), and a video frame is whole "
                         "at its last packet (aiortc's waits for the next frame's first). It asks for a lost video "
                         "packet once (aiortc), where a browser asks again until it comes: its freezes over WebRTC "
                         "are its own, and the freeze target over WebRTC is judged on Chromium's count, with the "
                         "app's jitter cushion (web/src/lib/loss_cushion.js: a round trip and 60 ms while the "
                         "connection is new or losing packets).")
    return section


def _summary(runs: list[dict], link: str, transport: str, clean_first: dict[str, float]) -> str:
    if not runs:
        return "the client failed (see the bench log)"
    first = p50([r["first_frame_s"] for r in runs])
    if link == "clean":
        clean_first[transport] = first
    freezes = sum(r["freezes"] for r in runs)
    frozen = sum(r["freeze_s"] for r in runs)
    text = f"first frame {first * 1000:.0f} ms"
    if link != "clean" and transport in clean_first:
        ratio = first / clean_first[transport]
        text += f" ({ratio:.2f}× clean{', ' + met(ratio, 1.5, lambda v: f'{v:.2f}×') if link.startswith('150') else ''})"
    judged = f", {met(freezes, 0, lambda v: f'{v:.0f}')}" if link.startswith("150") and transport == "websocket" else ""
    frames = sum(r["frames"] for r in runs)
    text += f"; {freezes} freezes over 200 ms ({frozen:.1f} s in all{judged}) in {frames} frames"
    if transport == "websocket":
        text += f"; {sum(r['late_frames'] for r in runs)} frames late for a 120 ms buffer"
    offsets = [r for r in runs if r["av_offset_ms"] is not None]
    if offsets and transport == "webrtc":
        worst = max(offsets, key=lambda r: abs(r["av_offset_ms"]))["av_offset_ms"]
        spread = max(r["av_offset_p95_ms"] for r in offsets)
        text += (f"; video {worst:+.0f} ms from its audio, worst reply's median "
                 f"({met(abs(worst), MAX_LIP_OFFSET_MS, lambda v: f'{v:.0f} ms')}), single frames within "
                 f"{spread:.0f} ms P95")
    return text + f"; {p50([r['kbps'] for r in runs]):.0f} kbit/s on the link"
