"""An Opus jitter buffer that gives up on a lost packet soon and never stays behind.

aiortc's audio receiver waits for a lost packet until 16 more have come (320 ms of 20 ms packets), then hands over
one frame for each packet that comes: after a single loss the microphone stays 320 ms behind for the rest of the
call, and every end of turn comes that much later. This buffer waits for a missing packet only until `patience`
later ones have come, skips it, and hands over all it holds at once: the packets in a row are joined into one Opus
packet of several frames (RFC 6716 section 3.2.5, "code 3", at most 120 ms), which the decoder splits again. A lost
packet costs its own 20 ms and a wait of `patience` packets, nothing after.
"""

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint16_gt

_MAX_PACKET_MS = 120.0  # the longest an Opus packet may play
_MAX_FRAMES = 48  # RFC 6716: a code 3 packet's frame count field
_RESYNC = 100  # a packet this far behind the one due: the sender's numbers started anew


def frame_ms(toc: int) -> float:
    """How long one frame of an Opus packet whose first (TOC) byte is `toc` plays (RFC 6716 section 3.1)."""
    config = toc >> 3
    if config < 12:  # SILK
        return (10.0, 20.0, 40.0, 60.0)[config % 4]
    if config < 16:  # hybrid
        return (10.0, 20.0)[config % 2]
    return (2.5, 5.0, 10.0, 20.0)[config % 4]  # CELT


def join(frames: list[bytes]) -> bytes:
    """Single-frame Opus packets ("code 0") with the same configuration, as one packet of all their frames."""
    if len(frames) == 1:
        return frames[0]
    toc = frames[0][0]
    out = bytearray([(toc & 0xFC) | 3, 0x80 | len(frames)])  # code 3, variable bitrate, the frame count
    for frame in frames[:-1]:  # each frame's length but the last's
        size = len(frame) - 1
        if size < 252:
            out.append(size)
        else:
            first = 252 + (size & 3)
            out += bytes([first, (size - first) >> 2])
    for frame in frames:
        out += frame[1:]
    return bytes(out)


class CatchUpJitterBuffer(JitterBuffer):
    """aiortc's `JitterBuffer` interface for an Opus track: `add` takes each packet as it comes and returns what can
    be decoded now, as one frame."""

    def __init__(self, patience: int = 3):
        super().__init__(capacity=16)
        self._patience = patience
        self._next: int | None = None  # the sequence number due next
        self._held: dict[int, RtpPacket] = {}

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        number = packet.sequence_number
        if self._next is None or (uint16_gt(self._next, number) and uint16_add(self._next, -number) >= _RESYNC):
            # the first packet, or the sender's numbers started anew
            self._next = number
            self._held.clear()
        if uint16_gt(self._next, number):  # late: what it held went on without it
            return False, None
        self._held[number] = packet
        if self._next not in self._held and len(self._held) >= self._patience:
            self._next = min(self._held, key=lambda n: uint16_add(n, -self._next))  # give up on the missing ones
        return False, self._take_run()

    def _take_run(self) -> JitterFrame | None:
        """The packets in a row from the one due, as one frame (as many as one Opus packet can carry); a packet
        with no payload only keeps its place."""
        run: list[RtpPacket] = []
        while self._next in self._held:
            packet = self._held[self._next]
            data = packet._data
            if data:
                first = run[0]._data if run else data
                joinable = data[0] & 3 == 0 and data[0] & 0xFC == first[0] & 0xFC
                if run and (not joinable or len(run) >= _MAX_FRAMES
                            or (len(run) + 1) * frame_ms(first[0]) > _MAX_PACKET_MS):
                    break
                run.append(packet)
            del self._held[self._next]
            self._next = uint16_add(self._next, 1)
            if data and data[0] & 3:  # a packet of several frames already goes alone
                break
        if not run:
            return None
        return JitterFrame(data=join([p._data for p in run]), timestamp=run[0].timestamp)
