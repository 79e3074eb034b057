"""Frames for a client's video decoder: H.264 or VP8 through libav (PyAV), one encoded frame out per frame in.

Low-latency settings: no B-frames and no lookahead (a frame comes out the moment it goes in), a keyframe every
`keyframe_interval_s` and whenever asked (a stream's start, after a clear, a client's request), constant quality
with a bitrate ceiling: the face's still parts cost almost nothing, and a burst of motion cannot flood a slow
connection.
"""

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.frame import PictureType


@dataclass(frozen=True)
class VideoQuality:
    crf: int = 21  # H.264's constant quality; VP8 uses its own scale (crf 10, quantizer 4-30)
    max_kbps: int = 1400
    keyframe_interval_s: float = 2.0


def _options(codec: str, quality: VideoQuality) -> dict[str, str]:
    ceiling = f"{quality.max_kbps}k"
    if codec == "libx264":
        # forced-idr: a keyframe asked for is an IDR frame, where a decoder may start.
        return {"preset": "veryfast", "tune": "zerolatency", "profile": "baseline", "crf": str(quality.crf),
                "maxrate": ceiling, "bufsize": ceiling, "forced-idr": "1"}
    return {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "crf": "10"}


class VideoEncoder:
    """One stream's encoder (its frames depend on each other: one per stream, fed in order)."""

    CODECS = {"h264": "libx264", "vp8": "libvpx"}

    def __init__(self, codec: str, width: int, height: int, fps: int, quality: VideoQuality = VideoQuality()):
        if width % 2 or height % 2:
            raise ValueError(f"encoded video needs an even frame size, got {width}x{height}")
        name = self.CODECS[codec]
        context = av.CodecContext.create(name, "w")
        context.width, context.height, context.pix_fmt = width, height, "yuv420p"
        context.time_base = Fraction(1, fps)
        context.framerate = fps
        context.gop_size = max(1, round(quality.keyframe_interval_s * fps))
        context.max_b_frames = 0
        if name == "libvpx":
            context.bit_rate = quality.max_kbps * 1000
            context.qmin, context.qmax = 4, 30
        context.options = _options(name, quality)
        context.open()
        self._context = context
        self._index = 0
        self._keyframe_wanted = True

    def want_keyframe(self) -> None:
        """The next frame encoded decodes on its own."""
        self._keyframe_wanted = True

    def skip(self) -> None:
        """A frame's time passes without a picture (the next one shows a frame's worth later)."""
        self._index += 1

    def encode(self, rgb: np.ndarray) -> tuple[bytes, bool]:
        """One RGB frame → (its encoded bytes, whether it is a keyframe)."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
        frame.pts = self._index
        self._index += 1
        if self._keyframe_wanted:
            frame.pict_type = PictureType.I
            self._keyframe_wanted = False
        packets = self._context.encode(frame)
        if len(packets) != 1:
            raise RuntimeError(f"the video encoder gave {len(packets)} packets for one frame (expected 1)")
        return bytes(packets[0]), packets[0].is_keyframe
