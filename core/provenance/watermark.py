"""An inaudible watermark on generated speech, and the check for it (PerthNet's networks through ONNX Runtime).

The mark is a learned change to the 0-2 kHz magnitudes of the audio's 32 kHz spectrogram (2048-point frames,
10 ms apart), added where the audio has energy. Marking computes that change at 32 kHz and adds it, brought back to
the audio's own rate, to the untouched signal: everything above 2 kHz, and the phase, stay as they were. The check
reads the spectrogram at three speeds and averages a per-frame verdict over the voiced frames: a score near 1 is
marked, near 0 is not.

The ONNX files are made at set-up / image build by `core.provenance.export_perth`; `WATERMARK_DIR` says where.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import onnxruntime as ort
from pydantic import Field

from core.audio import resample

DEFAULT_WATERMARK_DIR = str(Path(__file__).resolve().parents[2] / "var" / "models" / "watermark")
WatermarkDir = Annotated[str, Field(default=DEFAULT_WATERMARK_DIR, validation_alias="WATERMARK_DIR")]
MARKED = 0.5  # a score at or above this says the audio carries the mark
_VOICED = 0.05  # a frame counts where its spectrogram's sum reaches this share of the loudest frame's
_HEADROOM_DB = 15.0
_SPEEDS = (1.25, 1.0, 0.75)  # the decoder's three readings of the frames


@dataclass(frozen=True)
class _Spectrum:
    sample_rate: int
    n_fft: int
    hop_size: int
    magnitude_floor: float
    subband: int

    @property
    def floor_db(self) -> float:
        return 20 * np.log10(self.magnitude_floor)

    def normalize(self, magnitudes: np.ndarray) -> np.ndarray:
        db = 20 * np.log10(np.maximum(magnitudes, self.magnitude_floor))
        return (db - self.floor_db) / (_HEADROOM_DB - self.floor_db)

    def denormalize(self, levels: np.ndarray) -> np.ndarray:
        db = levels * (_HEADROOM_DB - self.floor_db) + self.floor_db
        return 10.0 ** np.minimum(db / 20, 10.0)


class Watermark:
    def __init__(self, model_dir: str | Path, threads: int = 1):
        model_dir = Path(model_dir)
        if not (model_dir / "encoder.onnx").is_file():
            raise FileNotFoundError(
                f"no watermark model in {model_dir}: make it with `python -m core.provenance.export_perth {model_dir}`"
            )
        fields = json.loads((model_dir / "spectrum.json").read_text())
        self._spectrum = _Spectrum(**{k: fields[k] for k in _Spectrum.__dataclass_fields__})
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._encoder = ort.InferenceSession(str(model_dir / "encoder.onnx"), options, providers=["CPUExecutionProvider"])
        self._decoder = ort.InferenceSession(str(model_dir / "decoder.onnx"), options, providers=["CPUExecutionProvider"])
        self._window = np.hanning(self._spectrum.n_fft + 1)[:-1].astype(np.float32)  # periodic Hann

    def mark(self, audio: np.ndarray, sample_rate: int, strength: float = 1.0) -> np.ndarray:
        """The audio with the mark added: same rate, same length, float32. `strength` scales the model's change
        (1: as trained; more survives lower-bitrate codecs, and is louder)."""
        audio = np.asarray(audio, dtype=np.float32)
        spec = self._spectrum
        signal = resample(audio, sample_rate, spec.sample_rate)
        if signal.size <= spec.n_fft // 2:
            return audio  # shorter than half a frame: nothing to mark
        frames = self._stft(signal)
        magnitudes = np.abs(frames)
        levels = spec.normalize(magnitudes)
        voiced = _voiced(levels)
        band = levels[: spec.subband]
        residual = self._encoder.run(None, {"magnitudes": band[None].astype(np.float32)})[0][0] * voiced * strength
        change = spec.denormalize(band + residual) - np.maximum(magnitudes[: spec.subband], spec.magnitude_floor)
        phase = frames[: spec.subband] / np.maximum(magnitudes[: spec.subband], 1e-20)
        delta = self._istft(change * phase, signal.size)
        return (audio + resample(delta, spec.sample_rate, sample_rate)[: audio.size]).astype(np.float32)

    def score(self, audio: np.ndarray, sample_rate: int) -> float:
        """How surely the audio carries the mark: 0 (not at all) to 1; `MARKED` and above says it does."""
        spec = self._spectrum
        signal = resample(np.asarray(audio, dtype=np.float32), sample_rate, spec.sample_rate)
        if signal.size <= spec.n_fft // 2:
            return 0.0
        levels = spec.normalize(np.abs(self._stft(signal)))
        voiced = _voiced(levels)
        if not voiced.any():
            return 0.0
        band = levels[: spec.subband]
        count = band.shape[1]
        readings = [_stretch(band, max(1, int(count * speed))) for speed in _SPEEDS]
        names = [i.name for i in self._decoder.get_inputs()]
        outputs = self._decoder.run(None, {n: r[None].astype(np.float32) for n, r in zip(names, readings)})
        attention, verdicts = [], []
        for out in outputs:
            weights = _nearest(voiced, out.shape[2])
            total = max(weights.sum(), 1e-9)
            attention.append((out[0, 0] * weights).sum() / total)
            verdicts.append((out[0, 1] * weights).sum() / total)
        attention = np.exp(np.array(attention) - max(attention))
        return float(np.clip((np.array(verdicts) * attention / attention.sum()).sum(), 0.0, 1.0))

    def _stft(self, signal: np.ndarray) -> np.ndarray:
        """Centred frames (reflect-padded), one every hop: (n_fft // 2 + 1, frames) complex."""
        n_fft, hop = self._spectrum.n_fft, self._spectrum.hop_size
        padded = np.pad(signal, n_fft // 2, mode="reflect")
        count = 1 + signal.size // hop
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:count]
        return np.fft.rfft(frames * self._window, axis=1).T

    def _istft(self, bands: np.ndarray, length: int) -> np.ndarray:
        """The signal of a spectrogram that holds only its lowest bins (the rest zero), overlap-added."""
        n_fft, hop = self._spectrum.n_fft, self._spectrum.hop_size
        full = np.zeros((n_fft // 2 + 1, bands.shape[1]), dtype=np.complex64)
        full[: bands.shape[0]] = bands
        frames = np.fft.irfft(full.T, n=n_fft, axis=1) * self._window
        out = np.zeros(n_fft + hop * (frames.shape[0] - 1), dtype=np.float64)
        envelope = np.zeros_like(out)
        squared = self._window.astype(np.float64) ** 2
        for i, frame in enumerate(frames):
            out[i * hop : i * hop + n_fft] += frame
            envelope[i * hop : i * hop + n_fft] += squared
        out /= np.where(envelope > 1e-11, envelope, 1.0)
        start = n_fft // 2
        return out[start : start + length].astype(np.float32)


def _voiced(levels: np.ndarray) -> np.ndarray:
    energy = levels.sum(axis=0)
    return (energy > energy.max() * _VOICED).astype(np.float32)


def _stretch(band: np.ndarray, size: int) -> np.ndarray:
    """Linear resampling along time, the first and last frames kept in place."""
    count = band.shape[1]
    if size == count:
        return band
    positions = np.linspace(0, count - 1, size) if size > 1 else np.zeros(1)
    left = np.floor(positions).astype(int)
    right = np.minimum(left + 1, count - 1)
    share = (positions - left)[None]
    return band[:, left] * (1 - share) + band[:, right] * share


def _nearest(mask: np.ndarray, size: int) -> np.ndarray:
    index = np.minimum(np.floor(np.arange(size) * (mask.size / size)).astype(int), mask.size - 1)
    return mask[index]
