"""Silero VAD (v6, ONNX) on 32 ms windows: the plain model, one window in, one speech probability out."""

from pathlib import Path

import numpy as np
import onnxruntime

WINDOW = 512  # samples at 16 kHz = 32 ms
_CONTEXT = 64


def default_model_path() -> Path:
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


class SileroVad:
    """One instance per stream: it carries the recurrent state and the audio context between windows."""

    def __init__(self, session: onnxruntime.InferenceSession):
        self._session = session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    @staticmethod
    def load_session(path: Path | None = None) -> onnxruntime.InferenceSession:
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        return onnxruntime.InferenceSession(
            str(path or default_model_path()), providers=["CPUExecutionProvider"], sess_options=opts
        )

    def speech_probability(self, window: np.ndarray) -> float:
        """Probability that a 512-sample, 16 kHz window holds speech."""
        x = np.concatenate([self._context, window]).reshape(1, -1)
        prob, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = window[-_CONTEXT:]
        return float(prob[0])
