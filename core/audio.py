"""PCM decoding, encoding and resampling shared by the speech stages."""

from enum import IntEnum
from math import gcd

import numpy as np
from scipy.signal import resample_poly

from core.errors import BadRequest


class Encoding(IntEnum):
    """How samples are written (the numbers are the contracts' AudioEncoding values)."""

    LINEAR16 = 1  # 16-bit signed little-endian
    FLOAT32 = 2  # 32-bit float little-endian, in [-1, 1]


LINEAR16 = Encoding.LINEAR16
FLOAT32 = Encoding.FLOAT32
SAMPLE_RATES = range(8000, 96001)  # the rates the speech stages take
_BYTES_PER_SAMPLE = {LINEAR16: 2, FLOAT32: 4}


def check_format(encoding: int, sample_rate_hz: int, channels: int) -> None:
    """Audio the speech stages can read: LINEAR16 or FLOAT32, mono, at one of SAMPLE_RATES (channels 0: mono)."""
    if encoding not in _BYTES_PER_SAMPLE:
        raise BadRequest("audio encoding must be LINEAR16 or FLOAT32")
    if sample_rate_hz not in SAMPLE_RATES:
        raise BadRequest(
            f"sample rate {sample_rate_hz} Hz is not supported; use {SAMPLE_RATES.start}-{SAMPLE_RATES.stop - 1} Hz"
        )
    if channels not in (0, 1):
        raise BadRequest(f"{channels} channels sent; send mono audio")


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

