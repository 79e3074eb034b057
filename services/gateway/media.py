"""Binary WebSocket messages that carry media to the client (docs/websocket.md, "Media messages").

    byte 0       kind: 1 audio, 2 video frame
    bytes 1-4    turn index, uint32 little-endian
    bytes 5-12   presentation time in seconds from the start of the turn's reply, float64 little-endian
    audio:       the rest is LINEAR16 mono PCM at the session's output rate
    video:       bytes 13-16 audio length N (uint32), then N bytes of PCM (the audio this frame shows), then a JPEG
"""

import struct

AUDIO = 1
VIDEO = 2
_HEADER = struct.Struct("<BId")
_AUDIO_LEN = struct.Struct("<I")


def audio_message(turn: int, pts_s: float, pcm: bytes) -> bytes:
    return _HEADER.pack(AUDIO, turn, pts_s) + pcm


def video_message(turn: int, pts_s: float, pcm: bytes, jpeg: bytes) -> bytes:
    return _HEADER.pack(VIDEO, turn, pts_s) + _AUDIO_LEN.pack(len(pcm)) + pcm + jpeg


def parse(message: bytes) -> dict:
    """The inverse, for clients written in Python (and the tests)."""
    kind, turn, pts = _HEADER.unpack_from(message)
    body = message[_HEADER.size :]
    if kind == AUDIO:
        return {"kind": "audio", "turn": turn, "pts": pts, "pcm": body}
    (n,) = _AUDIO_LEN.unpack_from(body)
    return {"kind": "video", "turn": turn, "pts": pts, "pcm": body[4 : 4 + n], "jpeg": body[4 + n :]}
