"""The one small interface every TTS backend implements."""

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Stress/length marks and start/end tokens carry no mouth shape of their own: their time goes to the next phoneme.
SILENT_MARKS = frozenset({"ˈ", "ˌ", "ː", "^", "$"})


@dataclass(frozen=True)
class Phoneme:
    symbol: str
    start_s: float  # relative to the start of the utterance
    end_s: float


@dataclass(frozen=True)
class Utterance:
    audio: np.ndarray  # float32 mono in [-1, 1] at the backend's sample rate
    phonemes: tuple[Phoneme, ...]  # empty where the engine gives no timings


@dataclass(frozen=True)
class VoiceSpec:
    name: str
    language: str
    sample_rate: int
    backend: str
    gives_phoneme_timings: bool


class TtsBackend(Protocol):
    voice: VoiceSpec

    def load(self) -> None:
        """Load the voice and synthesize one warm-up sentence."""

    def synthesize(self, text: str, speaking_rate: float) -> Utterance:
        """Speak one clause of normalized text. Characters the voice cannot speak are skipped."""
