"""WebRTC: a conversation's media over RTP (UDP, jitter buffers, congestion control, NAT traversal), beside the
WebSocket.

The WebSocket stays the session's control channel: the hello, then an offer and its answer (`webrtc_offer` →
`webrtc_answer`). Once the peer connection is up, the events go over its data channel "events" (when the client
opened one; fatal errors and `reconnect` on the WebSocket, which then closes), the client's microphone arrives as
an Opus track (decoded here and handed to the conversation like WebSocket audio; a lost packet is given up after
three more came, `catch_up_jitter`), and each reply leaves as an audio track (the gateway's own Opus packets) and
a video track (the animation stage's H.264 or VP8 frames), passed through: nothing is encoded twice.

The tracks play the reply as the WebSocket client would: from its first media message on, in real time; held at
`pause`, going on at `resume`, and at `interrupted` everything queued of that turn is dropped at once. Audio and
video take their RTP timestamps from one clock (the session's, on which each reply's frames carry their pts), so a
browser keeps the lips on the voice from the RTCP sender reports.

Moving between the two: a reply plays to its end on the way it started. When the peer connection comes up during
a reply that the WebSocket carries, that reply goes on there and the next one takes the peer connection. When the
peer connection fails or closes, the media go back to the WebSocket, and what its tracks still held of the reply
(not played yet) goes first, from its last keyframe, so the reply goes on where it was cut; the session goes on,
and the client may offer again.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from services.gateway import media_messages
from services.gateway.catch_up_jitter import CatchUpJitterBuffer
from services.gateway.config import IceServer
from services.gateway.protocol import AudioSpec

log = logging.getLogger(__name__)
_VIDEO_RATE = 90000  # RTP clock of every video codec
_AUDIO_RATE = 48000  # RTP clock of Opus
_CODEC_MIME = {"h264": "video/H264", "vp8": "video/VP8"}


class ReplyClock:
    """The session's media clock, shared by the audio and the video track: each reply starts on it when its first
    media message arrives (never before the last reply's end), stands still while the reply is paused, and an
    interrupted reply's media, queued or late, are never played."""

    def __init__(self):
        self._origin = time.monotonic()
        self._turn = -1  # the reply playing or last played
        self._dropped = -1  # the latest interrupted reply
        self._start = 0.0  # the current reply's start, seconds on the session clock
        self._end = 0.0  # the furthest any track has queued, seconds on the session clock
        self._paused_at: float | None = None
        self._paused_s = 0.0  # the current reply's time spent paused
        self.changed = asyncio.Event()  # a pause, a resume or a drop: waiting tracks look again

    def now(self) -> float:
        return time.monotonic() - self._origin

    def place(self, turn: int, pts_s: float, duration_s: float) -> float | None:
        """Where on the session clock a piece of `turn` at `pts_s` into its reply plays; None for a reply that is
        over (an older one, or one interrupted)."""
        if self.stale(turn):
            return None
        if turn > self._turn:
            self._turn, self._start, self._paused_s, self._paused_at = turn, max(self.now(), self._end), 0.0, None
        at = self._start + pts_s
        self._end = max(self._end, at + duration_s)
        return at

    def stale(self, turn: int) -> bool:
        return turn < self._turn or turn <= self._dropped

    def due(self, at: float) -> float:
        """Seconds until a piece placed `at` is due (the reply's pauses push it later); inf while paused."""
        if self._paused_at is not None:
            return float("inf")
        return at + self._paused_s - self.now()

    def pause(self, turn: int) -> None:
        if turn == self._turn and self._paused_at is None:
            self._paused_at = self.now()
            self._wake()

    def resume(self, turn: int) -> None:
        if turn == self._turn and self._paused_at is not None:
            self._paused_s += self.now() - self._paused_at
            self._end += self.now() - self._paused_at
            self._paused_at = None
            self._wake()

    def drop(self, turn: int) -> None:
        """The reply was interrupted: what is left of it goes nowhere, and the next reply starts now."""
        self._dropped = max(self._dropped, turn)
        if turn >= self._turn:
            self._end, self._paused_at = self.now(), None
        self._wake()

    def rtp(self, at: float, rate: int) -> int:
        """The RTP timestamp of a piece placed `at` (pauses included, so the receiver's clock runs on)."""
        return int(round((at + self._paused_s) * rate))

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class PacedTrack(MediaStreamTrack):
    """One kind of a reply's media (already encoded), released when it is due on the session clock."""

    def __init__(self, kind: str, clock: ReplyClock, rate: int):
        super().__init__()
        self.kind = kind
        self._clock = clock
        self._rate = rate
        self._queue: deque[tuple[int, float, bytes]] = deque()  # (turn, place on the session clock, packet)
        self._arrived = asyncio.Event()

    def put(self, turn: int, at: float, packet: bytes) -> None:
        self._queue.append((turn, at, packet))
        self._arrived.set()

    async def recv(self) -> av.Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            while self._queue and self._clock.stale(self._queue[0][0]):
                self._queue.popleft()  # an interrupted reply's, or one played over
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            turn, at, data = self._queue[0]
            wait = self._clock.due(at)
            if wait > 0:
                changed = self._clock.changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), None if wait == float("inf") else wait)
                continue
            self._queue.popleft()
            packet = av.Packet(data)
            packet.pts = self._clock.rtp(at, self._rate)
            packet.time_base = Fraction(1, self._rate)
            return packet


class WebRtcPeer:
    """One client's peer connection: its microphone in, the replies' audio and video out."""

    def __init__(self, ice_servers: list[IceServer], video_codec: str, audio_spec: AudioSpec,
                 on_audio: Callable[[bytes], None], on_keyframe: Callable[[], None],
                 on_closed: Callable[["WebRtcPeer"], None], pre_skip_s: float):
        config = RTCConfiguration([RTCIceServer(urls=s.urls, username=s.username or None,
                                                credential=s.credential or None) for s in ice_servers])
        self._pc = RTCPeerConnection(config)
        self._clock = ReplyClock()
        self._audio = PacedTrack("audio", self._clock, _AUDIO_RATE)
        self._video = PacedTrack("video", self._clock, _VIDEO_RATE)
        self._video_codec = video_codec
        self._audio_spec = audio_spec
        self._on_audio = on_audio
        self._on_keyframe = on_keyframe
        self._on_closed = on_closed
        self._pre_skip_s = pre_skip_s  # the Opus decoder's first samples are silence: frames wait that much too
        # The current reply's media messages as they came, from the last keyframe played on: what the WebSocket
        # takes over if the connection is lost. (turn, place on the session clock, message, keyframe)
        self._held: deque[tuple[int, float, bytes, bool]] = deque()
        self._ended = -1  # the latest reply whose media have all come
        self._up = False  # connected at least once
        self._channel = None
        self._readers: list[asyncio.Task] = []
        self._pc.on("track", self._on_track)
        self._pc.on("datachannel", self._on_datachannel)
        self._pc.on("connectionstatechange", self._on_state)

    @property
    def carries_media(self) -> bool:
        """The replies' media go over this connection: it came up and has not failed or closed (a moment's
        \"disconnected\" holds them; the client gives the connection up if it lasts)."""
        return self._up and self._pc.connectionState not in ("failed", "closed")

    async def answer(self, offer_sdp: str) -> str:
        """The answer to the client's offer (ICE candidates gathered, none trickled). The offer must receive audio
        and video (and may send its microphone as audio); the video codec is the one the hello chose."""
        audio = self._pc.addTransceiver(self._audio, direction="sendrecv")
        video = self._pc.addTransceiver(self._video, direction="sendonly")
        video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                   if c.mimeType in (_CODEC_MIME[self._video_codec], "video/rtx")])
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        if audio.mid is None or video.mid is None:
            raise ValueError("the offer must have an audio and a video section")
        self._watch_keyframe_requests(video.sender)
        # the microphone: a lost packet held it back 320 ms for good in aiortc's own jitter buffer (aiortc is pinned)
        audio.receiver._RTCRtpReceiver__jitter_buffer = CatchUpJitterBuffer()
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        return self._pc.localDescription.sdp

    def media(self, message: bytes) -> None:
        """A media message of the WebSocket protocol, played over the tracks instead."""
        item = media_messages.parse(message)
        turn = item["turn"]
        at = self._clock.place(turn, item["pts"], 0.04)
        if at is None:
            return
        self._hold(turn, at, message, item["kind"] == "video" and item["keyframe"])
        if item["audio"]:
            self._audio.put(turn, at, item["audio"])
        if item["kind"] == "video":
            self._video.put(turn, at + self._pre_skip_s, item["image"])

    def _hold(self, turn: int, at: float, message: bytes, keyframe: bool) -> None:
        self._held.append((turn, at, message, keyframe))
        self._forget_played()

    def _forget_played(self) -> None:
        """Keep the current reply's messages from its last keyframe played on."""
        while self._held and self._clock.stale(self._held[0][0]):
            self._held.popleft()
        played = [i for i, (_, at, _, key) in enumerate(self._held) if key and self._clock.due(at) <= 0]
        for _ in range(played[-1] if played else 0):
            self._held.popleft()

    def unplayed(self) -> list[bytes]:
        """What the tracks hold of the current reply and have not played, as media messages for the WebSocket: the
        frames from the last keyframe before it first, without their audio (heard already) and at the pts where it
        goes on (a decoder starts from a keyframe; a player draws the last of frames due at once), then the rest
        as it came. Where the tracks played all they held of a reply still being made (the stages fell behind
        real time), those frames at the last one's pts, so that the media to come decode."""
        self._forget_played()
        held = list(self._held)
        first = next((i for i, (_, at, _, _) in enumerate(held) if self._clock.due(at) > 0), None)
        if first is None:
            if not held or held[-1][0] <= self._ended:
                return []
            first = len(held)
        goes_on = media_messages.parse(held[min(first, len(held) - 1)][2])["pts"]
        lead_in = []
        for _, _, message, _ in held[:first]:
            item = media_messages.parse(message)
            if item["kind"] == "video":
                lead_in.append(media_messages.video_message(item["turn"], goes_on, b"", item["image"],
                                                            self._video_codec, item["keyframe"]))
        return lead_in + [message for _, _, message, _ in held[first:]]

    def follow(self, event: dict) -> None:
        """The tracks act on the events that concern playback."""
        kind, turn = event.get("type"), event.get("turn")
        if kind == "pause":
            self._clock.pause(turn)
        elif kind == "resume":
            self._clock.resume(turn)
        elif kind == "interrupted":
            self._clock.drop(turn)
        elif kind == "turn_end":
            self._ended = max(self._ended, turn)

    def send_event(self, event: dict) -> bool:
        """The event over the data channel "events", when the client opened one; False otherwise."""
        if self._channel is None or self._channel.readyState != "open":
            return False
        self._channel.send(json.dumps(event))
        return True

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        self._audio.stop()
        self._video.stop()
        await self._pc.close()

    def _on_track(self, track) -> None:
        if track.kind == "audio":
            self._readers.append(asyncio.create_task(self._read_microphone(track)))

    def _on_datachannel(self, channel) -> None:
        if channel.label == "events":
            self._channel = channel

    async def _on_state(self) -> None:
        state = self._pc.connectionState
        log.info("WebRTC peer connection %s", state)
        self._up = self._up or state == "connected"
        if state in ("failed", "closed"):
            self._on_closed(self)

    def _watch_keyframe_requests(self, sender: RTCRtpSender) -> None:
        """A receiver that lost its place asks for a keyframe (PLI/FIR); the frames pass through unencoded here, so
        the animation stage makes the next one a keyframe, as for a WebSocket client's `keyframe`."""
        original = sender._send_keyframe  # aiortc's hook for PLI/FIR: it only flags its own encoder

        def ask() -> None:
            original()
            self._on_keyframe()

        sender._send_keyframe = ask

    async def _read_microphone(self, track) -> None:
        """The client's microphone, decoded by the peer connection, in the hello's format."""
        layout_format = "s16" if self._audio_spec.encoding == "linear16" else "flt"
        resampler = av.AudioResampler(format=layout_format, layout="mono", rate=self._audio_spec.sample_rate)
        try:
            while True:
                frame = await track.recv()
                for out in resampler.resample(frame):
                    self._on_audio(bytes(out.planes[0])[: out.samples * (2 if layout_format == "s16" else 4)])
        except MediaStreamError:
            return
