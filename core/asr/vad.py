"""Silero VAD (v6, ONNX) on 32 ms windows as they stream in: one window in, one speech probability out.

The model and its ONNX session are faster-whisper's (`faster_whisper.vad`), whose own call reads a whole recording
at once; a stream needs the recurrent state and the audio context carried from one window to the next, which this
wrapper keeps per stream."""

import numpy as np
import onnxruntime
from faster_whisper.vad import get_vad_model

WINDOW = 512  # samples at 16 kHz = 32 ms
_CONTEXT = 64


class SileroVad:
    """One instance per stream: it carries the recurrent state and the audio context between windows."""

    def __init__(self, session: onnxruntime.InferenceSession):
        self._session = session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    @staticmethod
    def load_session() -> onnxruntime.InferenceSession:
        """The library's session of the model (one per process, shared by every stream)."""
        return get_vad_model().session

    def speech_probability(self, window: np.ndarray) -> float:
        """Probability that a 512-sample, 16 kHz window holds speech."""
        x = np.concatenate([self._context, window]).reshape(1, -1)
        prob, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = window[-_CONTEXT:]
        return float(prob.reshape(-1)[0])
