"""PCM decoding, encoding and resampling shared by the speech stages."""

from math import gcd

import numpy as np
from avatar.common.v1 import common_pb2
from scipy.signal import resample_poly

from core.errors import BadRequest

LINEAR16 = common_pb2.LINEAR16
FLOAT32 = common_pb2.FLOAT32
_BYTES_PER_SAMPLE = {LINEAR16: 2, FLOAT32: 4}


def check_format(fmt: common_pb2.AudioFormat, allowed_rates: range = range(8000, 96001)) -> None:
    if fmt.encoding not in _BYTES_PER_SAMPLE:
        raise BadRequest("audio encoding must be LINEAR16 or FLOAT32")
    if fmt.sample_rate_hz not in allowed_rates:
        raise BadRequest(
            f"sample rate {fmt.sample_rate_hz} Hz is not supported; use {allowed_rates.start}-{allowed_rates.stop - 1} Hz"
        )
    if fmt.channels not in (0, 1):
        raise BadRequest(f"{fmt.channels} channels sent; send mono audio")


def decode(data: bytes, encoding: int) -> np.ndarray:
    """Bytes → float32 samples in [-1, 1]."""
    width = _BYTES_PER_SAMPLE[encoding]
    if len(data) % width:
        raise BadRequest(f"audio chunk of {len(data)} bytes is not a whole number of {width}-byte samples")
    if encoding == LINEAR16:
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def encode_linear16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def resample(samples: np.ndarray, src_hz: int, dst_hz: int) -> np.ndarray:
    """Band-limited polyphase resampling (anti-aliased), not sample dropping."""
    if src_hz == dst_hz or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    g = gcd(src_hz, dst_hz)
    return resample_poly(samples, dst_hz // g, src_hz // g).astype(np.float32)

