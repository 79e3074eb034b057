"""Small synchronous clients for the stage contracts, used by the tests."""

import time

import numpy as np
from avatar.asr.v1 import asr_pb2
from avatar.common.v1 import common_pb2

from tests.speech import to_linear16

CHUNK_S = 0.1


def asr_requests(audio: np.ndarray, rate: int = 16000, speed: float = 0.0, partials: bool = True,
                 end_of_turn_ms: int = 0, end_of_turn: int = asr_pb2.RecognitionConfig.END_OF_TURN_UNSPECIFIED,
                 vocabulary=()):
    """Config, then 100 ms LINEAR16 chunks; `speed` > 0 paces them at that multiple of real time."""
    yield asr_pb2.StreamingRecognizeRequest(
        config=asr_pb2.RecognitionConfig(
            format=common_pb2.AudioFormat(sample_rate_hz=rate, encoding=common_pb2.LINEAR16, channels=1),
            language="en",
            partial_results=partials,
            end_of_turn_silence_ms=end_of_turn_ms,
            end_of_turn=end_of_turn,
            vocabulary=vocabulary,
        ),
        meta=common_pb2.RequestMeta(session_id="test", turn_id="t1"),
    )
    step = int(rate * CHUNK_S)
    for start in range(0, audio.size, step):
        if speed:
            time.sleep(CHUNK_S / speed)
        yield asr_pb2.StreamingRecognizeRequest(audio=to_linear16(audio[start : start + step]))


def with_silence(*pieces: np.ndarray, gap_s: float = 1.0, rate: int = 16000) -> np.ndarray:
    silence = np.zeros(int(gap_s * rate), dtype=np.float32)
    out = [silence[: rate // 4]]
    for piece in pieces:
        out += [piece, silence]
    return np.concatenate(out)
