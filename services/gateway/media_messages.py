"""Binary WebSocket messages that carry media to the client (docs/websocket.md, "Media messages"), and the
codecs a client may choose in its hello.

    byte 0       kind: 1 audio, 2 video frame (JPEG), 3 video frame (encoded: H.264 or VP8)
    bytes 1-4    turn index, uint32 little-endian
    bytes 5-12   presentation time in seconds from the start of the turn's reply, float64 little-endian
    audio:       the rest is audio: LINEAR16 mono PCM at the output rate, or one 40 ms Opus packet
    JPEG frame:  bytes 13-16 audio length N (uint32), then N bytes of audio (what this frame shows), then a JPEG
    encoded:     byte 13 flags (bit 0: a keyframe, decodable on its own), bytes 14-17 audio length N, N bytes of
                 audio, then one encoded frame (an H.264 Annex B access unit or a VP8 frame)
"""

import struct
from dataclasses import dataclass, field
from functools import cache

from services.gateway.audio_encoder import PACKET_MS, OpusEncoder
from services.gateway.stages import OUTPUT_RATE, VideoOut

AUDIO = 1
VIDEO = 2
ENCODED_VIDEO = 3
_HEADER = struct.Struct("<BId")
_AUDIO_LEN = struct.Struct("<I")
_FLAGS = struct.Struct("<B")
_KEYFRAME = 1

# Codec name in the hello → the string a WebCodecs VideoDecoder is configured with (H.264: constrained
# baseline, level 3.1). "jpeg" frames are images of their own.
VIDEO_CODECS = {"h264": "avc1.42E01F", "vp8": "vp8", "jpeg": "jpeg"}


def choose(wanted: list[str], offered: list[str]) -> str | None:
    """The client's most preferred codec that this gateway offers, or None."""
    return next((codec for codec in wanted if codec in offered), None)


@cache
def _opus_pre_skip_s(kbps: int) -> float:
    """The encoder's look-ahead, the same for every reply at these settings: measured once, not per hello."""
    return OpusEncoder(OUTPUT_RATE, kbps).pre_skip_s


@dataclass
class ClientMedia:
    """The codecs one connection's hello chose, for every reply on it."""

    video: VideoOut = field(default_factory=VideoOut)
    audio: str = "linear16"  # or "opus"
    opus_kbps: int = 24

    def for_reply(self, turn: int) -> "ReplyMedia":
        return ReplyMedia(turn, self.video.codec, OpusEncoder(OUTPUT_RATE, self.opus_kbps) if self.audio == "opus" else None)

    @property
    def webrtc_capable(self) -> bool:
        """Whether these media can go over WebRTC as they are: H.264 or VP8 frames and Opus packets."""
        return self.video.codec in ("h264", "vp8") and self.audio == "opus"

    def pre_skip_s(self) -> float:
        """Silence at the start of each reply's decoded Opus (0 for PCM)."""
        return _opus_pre_skip_s(self.opus_kbps) if self.audio == "opus" else 0.0

    def describe(self) -> dict:
        """`ready`'s output_audio and output_video."""
        audio = {"sample_rate": OUTPUT_RATE, "encoding": self.audio}
        if self.audio == "opus":
            audio |= {"packet_ms": PACKET_MS, "pre_skip_s": self.pre_skip_s()}
        return {"output_audio": audio,
                "output_video": {"codec": self.video.codec, "codec_string": VIDEO_CODECS[self.video.codec]}}


class ReplyMedia:
    """One reply's media messages in the client's codecs: frames with the audio they show, and audio alone (when
    animation fails), on one clock from the reply's start."""

    def __init__(self, turn: int, video: str, opus: OpusEncoder | None):
        self._turn = turn
        self._video = video
        self._opus = opus
        self._packets = 0  # Opus packets so far: the next one's pts

    def frame(self, pts_s: float, pcm: bytes, image: bytes, keyframe: bool) -> bytes:
        """A frame's message (its 40 ms of audio is one Opus packet, when Opus)."""
        audio = pcm if self._opus is None else b"".join(packet for _, packet in self._encode(self._opus.encode(pcm)))
        return video_message(self._turn, pts_s, audio, image, self._video, keyframe)

    def audio(self, pts_s: float, pcm: bytes) -> list[bytes]:
        """Audio alone: one message of PCM, or a message per Opus packet it completes."""
        if self._opus is None:
            return [audio_message(self._turn, pts_s, pcm)]
        return [audio_message(self._turn, at, packet) for at, packet in self._encode(self._opus.encode(pcm))]

    def end(self) -> list[bytes]:
        """What the Opus encoder still holds (audio alone that ended mid-packet)."""
        if self._opus is None:
            return []
        return [audio_message(self._turn, at, packet) for at, packet in self._encode(self._opus.flush())]

    def _encode(self, packets: list[bytes]) -> list[tuple[float, bytes]]:
        """Packets with their pts: every packet, in frames or alone, is the next 40 ms of the reply."""
        timed = [((self._packets + i) * PACKET_MS / 1000, packet) for i, packet in enumerate(packets)]
        self._packets += len(packets)
        return timed


def audio_message(turn: int, pts_s: float, pcm: bytes) -> bytes:
    return _HEADER.pack(AUDIO, turn, pts_s) + pcm


def video_message(turn: int, pts_s: float, pcm: bytes, image: bytes, codec: str, keyframe: bool) -> bytes:
    if codec == "jpeg":
        return _HEADER.pack(VIDEO, turn, pts_s) + _AUDIO_LEN.pack(len(pcm)) + pcm + image
    flags = _KEYFRAME if keyframe else 0
    return _HEADER.pack(ENCODED_VIDEO, turn, pts_s) + _FLAGS.pack(flags) + _AUDIO_LEN.pack(len(pcm)) + pcm + image


def turn_of(message: bytes) -> int:
    return _HEADER.unpack_from(message)[1]


def parse(message: bytes) -> dict:
    """The inverse, for clients written in Python (and the tests). `audio`: PCM or an Opus packet, as the `ready`
    event's output_audio says."""
    kind, turn, pts = _HEADER.unpack_from(message)
    body = message[_HEADER.size :]
    if kind == AUDIO:
        return {"kind": "audio", "turn": turn, "pts": pts, "audio": body}
    keyframe = True
    if kind == ENCODED_VIDEO:
        (flags,) = _FLAGS.unpack_from(body)
        keyframe, body = bool(flags & _KEYFRAME), body[_FLAGS.size :]
    (n,) = _AUDIO_LEN.unpack_from(body)
    image = body[4 + n :]
    return {"kind": "video", "turn": turn, "pts": pts, "audio": body[4 : 4 + n], "image": image,
            "keyframe": keyframe, "encoded": kind == ENCODED_VIDEO}
