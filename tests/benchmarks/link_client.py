"""`python -m tests.benchmarks.link_client ADDRESS TRANSPORT TOKEN WAV`: one spoken question to a gateway, as a
client at the far end of a network link would ask it (bench_network runs it inside the link's namespace), and what
that client saw, as JSON on stdout:

- first_frame_s: from the end of the question's speech to the reply's first frame arriving;
- freezes: times the picture stood still more than 200 ms while the reply played, and their total seconds;
- late_frames (WebSocket): frames that came after the time a player with a 120 ms jitter buffer showed them at
  (such a player then goes on from there, as the browser app does);
- av_offset_ms, av_offset_p95_ms (WebRTC): how much later the reply's video arrives than its audio of the same
  moment, on the tracks' own clocks (each frame's RTP timestamp from the reply's first on its track, where the
  two start together), the median over the reply and the 95th percentile of single frames' distance from the
  audio; the client buffers as a browser does (WebRtcClient.buffer_as_a_browser: audio at once, a lost packet
  given up after three more, a video frame whole at its last packet). Over the WebSocket every frame carries its
  own audio, so the offset is 0 by construction;
- reply_s: the reply's length (the bench divides the bits the link carried by it).
"""

import asyncio
import json
import sys
import time

import numpy as np
import soundfile
import websockets

from services.common.priority_turns import CLIENT_JITTER_S as JITTER_S
from services.gateway import media_messages
from tests.webrtc_client import WebRtcClient

FREEZE_S = 0.2
_RTP_WRAP_S = {"audio": 2**32 / 48000, "video": 2**32 / 90000}  # RTP timestamps wrap around after this


def _freezes(shown: list[float]) -> tuple[int, float]:
    gaps = np.diff(shown) if len(shown) > 1 else np.zeros(0)
    long = gaps[gaps > FREEZE_S]
    return int(long.size), float(long.sum())


async def _websocket(address: str, token: str, speech: np.ndarray) -> dict:
    async with websockets.connect(f"ws://{address}/ws", max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "token": token,
                                  "media": {"video": ["h264"], "audio": ["opus"]}}))
        while json.loads(await ws.recv())["type"] != "ready":
            pass
        pcm = (np.clip(speech, -1, 1) * 32767).astype(np.int16).tobytes()
        start = time.monotonic()
        for i, at in enumerate(range(0, len(pcm), 3200)):  # 100 ms chunks, in real time
            await asyncio.sleep(max(0.0, start + i * 0.1 - time.monotonic()))
            await ws.send(pcm[at : at + 3200])
        spoken = time.monotonic()
        arrivals, ended = [], False
        silence = b"\0" * 3200
        while not ended or time.monotonic() < (arrivals[-1][0] if arrivals else 0) + 2.0:
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.1)
            except TimeoutError:
                await ws.send(silence)  # a live microphone keeps sending
                continue
            if isinstance(raw, bytes):
                message = media_messages.parse(raw)
                if message["kind"] == "video":
                    arrivals.append((time.monotonic(), message["pts"]))
            elif json.loads(raw)["type"] == "turn_end":
                ended = True
    first = arrivals[0][0]
    turn_start, lag, late, shown = first + JITTER_S, 0.0, 0, []
    for arrival, pts in arrivals:  # the page's player: frames on the audio clock, going on from where it ran out
        due = turn_start + pts + lag
        if arrival > due:
            late += 1
            lag += arrival - due + JITTER_S
            due = turn_start + pts + lag
        shown.append(due)
    count, seconds = _freezes(shown)
    return {"first_frame_s": first - spoken, "freezes": count, "freeze_s": seconds, "late_frames": late,
            "frames": len(arrivals), "av_offset_ms": 0.0, "av_offset_p95_ms": 0.0,
            "reply_s": arrivals[-1][1] + 0.04}


async def _webrtc(address: str, token: str, speech: np.ndarray) -> dict:
    async with WebRtcClient(address, "h264", token) as client:
        client.buffer_as_a_browser()
        spoken = time.monotonic() + client.microphone.say(speech)
        mark = len(client.received.events)
        await client.event("turn_end", after=mark)
        await client.played(quiet_s=1.5)
        frames = [t for t, _ in client.received.frames if t > spoken]
        timing = {kind: [(t, at) for t, at in arrivals if t > spoken] for kind, arrivals in client.received.timing.items()}
    count, seconds = _freezes(frames)
    return {"first_frame_s": frames[0] - spoken, "freezes": count, "freeze_s": seconds, "late_frames": 0,
            "frames": len(frames), **_av_offset_ms(timing), "reply_s": frames[-1] - frames[0] + 0.04}


def _av_offset_ms(timing: dict[str, list[tuple[float, float]]]) -> dict:
    """Each frame's arrival less its place on its track's clock (from the track's first frame of the reply): the
    video's median less the audio's is how late the picture comes after its sound (None without both)."""
    if not timing["audio"] or not timing["video"]:
        return {"av_offset_ms": None, "av_offset_p95_ms": None}
    lateness = {}
    for kind, arrivals in timing.items():
        first = arrivals[0][1]
        lateness[kind] = np.array([t - (at - first) % _RTP_WRAP_S[kind] for t, at in arrivals])
    audio = float(np.median(lateness["audio"]))
    return {"av_offset_ms": 1000 * (float(np.median(lateness["video"])) - audio),
            "av_offset_p95_ms": 1000 * float(np.percentile(np.abs(lateness["video"] - audio), 95))}


def main() -> None:
    address, transport, token, wav = sys.argv[1:5]
    speech, rate = soundfile.read(wav, dtype="float32")
    assert rate == 16000
    run = _webrtc if transport == "webrtc" else _websocket
    print(json.dumps(asyncio.run(asyncio.wait_for(run(address, token, speech), 180))))


if __name__ == "__main__":
    main()
