"""An MP4 (H.264 and AAC, through libav with PyAV) from a reply's JPEG frames and its audio, in memory."""

import io
from fractions import Fraction

import av
import numpy as np


def _picture(jpeg: bytes) -> np.ndarray:
    with av.open(io.BytesIO(jpeg), format="image2pipe", options={"vcodec": "mjpeg"}) as image:
        return next(image.decode(video=0)).to_ndarray(format="rgb24")


def mp4(jpegs: list[bytes], fps: int, pcm: bytes, rate: int) -> bytes:
    """`jpegs` shown at `fps`, with `pcm` (LINEAR16 mono at `rate`) as their sound; a frame of odd size is padded
    by a pixel (H.264 in 4:2:0 needs even sizes)."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        video = None
        if jpegs:
            height, width, _ = _picture(jpegs[0]).shape
            video = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "20"})
            video.width, video.height, video.pix_fmt = width + width % 2, height + height % 2, "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "mono"
        for index, jpeg in enumerate(jpegs):
            picture = _picture(jpeg)
            padded = np.zeros((video.height, video.width, 3), np.uint8)
            padded[: picture.shape[0], : picture.shape[1]] = picture
            frame = av.VideoFrame.from_ndarray(padded, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(video.encode(frame))
        if video is not None:
            container.mux(video.encode())
        samples = np.frombuffer(pcm, np.int16)
        for start in range(0, samples.size, 1024):
            frame = av.AudioFrame.from_ndarray(samples[start : start + 1024].reshape(1, -1), format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return out.getvalue()
