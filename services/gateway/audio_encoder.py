"""Reply audio for the wire as Opus (libopus through PyAV): one packet per 40 ms, the audio one video frame shows.

One encoder per reply (its packets depend on each other). PCM comes in any length; whole 40 ms packets go out,
and `flush` pads the last one with silence. At 16 kHz mono speech, 24 kbit/s is near transparent and a tenth
of the PCM it replaces.
"""

from fractions import Fraction

import av
import numpy as np

PACKET_MS = 40


class OpusEncoder:
    def __init__(self, rate: int, kbps: int):
        context = av.CodecContext.create("libopus", "w")
        context.sample_rate = rate
        context.layout = "mono"
        context.format = "s16"
        context.bit_rate = kbps * 1000
        context.time_base = Fraction(1, rate)
        context.options = {"frame_duration": str(PACKET_MS), "application": "voip"}
        context.open()
        self._context = context
        self._samples = rate * PACKET_MS // 1000
        self._pending = b""
        self._pts = 0
        # The encoder's look-ahead: a decoder's first samples are this much silence (OpusHead's pre-skip, given
        # at 48 kHz); clients play the decoded audio this much earlier to stay on the frames' clock.
        self.pre_skip_s = int.from_bytes(bytes(context.extradata)[10:12], "little") / 48000

    def encode(self, pcm: bytes) -> list[bytes]:
        """The packets `pcm` completes (LINEAR16 mono at the encoder's rate)."""
        self._pending += pcm
        packets = []
        size = self._samples * 2
        while len(self._pending) >= size:
            piece, self._pending = self._pending[:size], self._pending[size:]
            packets += self._packet(piece)
        return packets

    def flush(self) -> list[bytes]:
        """The last, partly filled packet, padded with silence."""
        if not self._pending:
            return []
        piece = self._pending + b"\0" * (self._samples * 2 - len(self._pending))
        self._pending = b""
        return self._packet(piece)

    def _packet(self, piece: bytes) -> list[bytes]:
        frame = av.AudioFrame.from_ndarray(np.frombuffer(piece, np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = self._context.sample_rate
        frame.pts = self._pts
        self._pts += self._samples
        return [bytes(packet) for packet in self._context.encode(frame)]
