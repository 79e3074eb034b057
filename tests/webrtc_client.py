"""A WebRTC client of the gateway written with aiortc, as a Python program (not a browser) would talk to it: the
WebSocket for the hello and the offer, a microphone track that speaks what it is given in real time, the reply's
audio and video tracks recorded with their arrival times, and the events from the data channel."""

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
import websockets
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError

from core import audio as pcm
from services.gateway import media_messages
from services.gateway.catch_up_jitter import CatchUpJitterBuffer

_RATE = 48000
_FRAME = 960  # 20 ms


class Microphone(MediaStreamTrack):
    """Speaks what `say` queues, in real time, and silence between."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self._queue: deque[np.ndarray] = deque()
        self._pending = np.zeros(0, np.int16)
        self._start: float | None = None
        self._sent = 0

    def say(self, audio: np.ndarray, rate: int = 16000) -> float:
        """Queue speech (float mono); the seconds until it has all been spoken."""
        samples = (np.clip(pcm.resample(audio.astype(np.float32), rate, _RATE), -1, 1) * 32767).astype(np.int16)
        self._queue.append(samples)
        return (self._pending.size + sum(q.size for q in self._queue)) / _RATE

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._start = self._start or time.monotonic()
        wait = self._start + self._sent * _FRAME / _RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        while self._pending.size < _FRAME and self._queue:
            self._pending = np.concatenate([self._pending, self._queue.popleft()])
        piece = np.zeros(_FRAME, np.int16)
        n = min(_FRAME, self._pending.size)
        piece[:n], self._pending = self._pending[:n], self._pending[n:]
        frame = av.AudioFrame.from_ndarray(piece[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = _RATE, self._sent * _FRAME, Fraction(1, _RATE)
        self._sent += 1
        return frame


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, but a frame is whole at its marked last packet, not when the next one begins."""

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        packets = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None
            if packets and packet.timestamp != packets[0].timestamp:  # the frame before had no mark: whole now
                break
            packets.append(packet)
            if packet.marker:
                break
        else:
            return None
        self.remove(len(packets))
        return JitterFrame(data=b"".join(p._data for p in packets), timestamp=packets[0].timestamp)


@dataclass
class Received:
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, RGB image)
    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, float mono 48 kHz)
    events: list[tuple[float, dict]] = field(default_factory=list)  # (arrival, event), from both channels
    websocket_media: list[tuple[float, dict]] = field(default_factory=list)  # (arrival, parsed): came instead
    # (arrival, RTP timestamp in seconds) of each audio and video frame: where the sender put it on its track's clock
    timing: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: {"audio": [], "video": []})


class WebRtcClient:
    def __init__(self, address: str, video: str = "h264", token: str = ""):
        self._address = address
        self._video = video
        self._token = token
        self.microphone = Microphone()
        self.received = Received()
        self._ws = None
        self._pc: RTCPeerConnection | None = None
        self._tasks: list[asyncio.Task] = []
        self._event_arrived = asyncio.Event()

    async def __aenter__(self) -> "WebRtcClient":
        self._ws = await websockets.connect(f"ws://{self._address}/ws", max_size=None)
        await self._ws.send(json.dumps({"type": "hello", "version": 1, "token": self._token,
                                        "media": {"video": [self._video], "audio": ["opus"]}}))
        self._tasks.append(asyncio.create_task(self._read_socket()))
        self.ready = await self.event("ready")
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self._tasks:
            task.cancel()
        if self._pc is not None:
            await self._pc.close()
        await self._ws.close()

    async def connect(self) -> None:
        """Offer a peer connection (a new one replaces the last) and wait until it is up."""
        if self._pc is not None:
            await self._pc.close()
        pc = self._pc = RTCPeerConnection()
        pc.addTrack(self.microphone if self.microphone.readyState == "live" else self._new_microphone())
        pc.addTransceiver("video", direction="recvonly")
        channel = pc.createDataChannel("events")
        channel.on("message", lambda raw: self._on_event(json.loads(raw)))
        pc.on("track", lambda track: self._tasks.append(asyncio.create_task(self._record(track))))
        await pc.setLocalDescription(await pc.createOffer())
        mark = len(self.received.events)
        await self._ws.send(json.dumps({"type": "webrtc_offer", "sdp": pc.localDescription.sdp}))
        answer = await self.event("webrtc_answer", after=mark)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        for _ in range(200):
            if pc.connectionState == "connected" and channel.readyState == "open":
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the peer connection is {pc.connectionState}")

    def buffer_as_a_browser(self) -> None:
        """aiortc's receiver holds each audio frame until four more have come (160 ms here), and after a lost
        packet 16 (320 ms, for good), and a video frame until the next one's first packet (40 ms): measuring lip
        sync, the audio takes the gateway's own microphone buffer (the next packet at once, a lost one given up
        after three more came, as a browser's player conceals a loss and plays on), and the video completes a frame
        at its last packet (the RTP marker), as a browser's does."""
        for transceiver in self._pc.getTransceivers():
            receiver = transceiver.receiver
            if transceiver.kind == "audio":
                receiver._RTCRtpReceiver__jitter_buffer = CatchUpJitterBuffer()
            else:
                receiver._RTCRtpReceiver__jitter_buffer = MarkerJitterBuffer(capacity=512, is_video=True)

    async def played(self, quiet_s: float = 1.0, timeout: float = 120) -> None:
        """Wait until the reply has played out: no audio or frame for `quiet_s`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = max([t for t, _ in self.received.frames[-1:] + self.received.audio[-1:]], default=0.0)
            if time.monotonic() - last >= quiet_s:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("the reply kept playing")

    async def drop(self) -> None:
        """The peer connection goes away (a network change, a closed tab's connection)."""
        await self._pc.close()
        self._pc = None

    async def give_up(self) -> None:
        """The peer connection is lost and the client says so on the WebSocket, as the app does (at once; closing
        the connection here takes a while)."""
        await self._ws.send(json.dumps({"type": "webrtc_close"}))
        await self.drop()

    def _new_microphone(self) -> Microphone:
        self.microphone = Microphone()
        return self.microphone

    async def event(self, kind: str, timeout: float = 120, after: int = 0) -> dict:
        """The first event of `kind` among those received from index `after` on."""
        deadline = time.monotonic() + timeout
        while True:
            for _, event in self.received.events[after:]:
                if event["type"] == kind:
                    return event
                assert event["type"] not in ("error",), event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} event")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event_arrived.wait(), remaining)
            self._event_arrived.clear()

    def _on_event(self, event: dict) -> None:
        self.received.events.append((time.monotonic(), event))
        self._event_arrived.set()

    async def _read_socket(self) -> None:
        async for raw in self._ws:
            if isinstance(raw, bytes):
                self.received.websocket_media.append((time.monotonic(), media_messages.parse(raw)))
            else:
                self._on_event(json.loads(raw))

    async def _record(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if frame.pts is not None:
                    self.received.timing[track.kind].append((now, float(frame.pts * frame.time_base)))
                if track.kind == "video":
                    self.received.frames.append((now, frame.to_ndarray(format="rgb24")))
                else:
                    samples = frame.to_ndarray().astype(np.float32) / 32768
                    mono = samples.reshape(-1, len(frame.layout.channels)).mean(axis=1)
                    self.received.audio.append((now, mono))
        except MediaStreamError:
            return
