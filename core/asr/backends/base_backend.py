"""The one small interface every ASR backend implements."""

import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float  # relative to the start of the audio passed in
    end_s: float
    confidence: float

    @property
    def key(self) -> str:
        """The word as two hypotheses are compared: lower case, without punctuation ("Wait," is "wait")."""
        return re.sub(r"[^\w']", "", self.text.lower())


class AsrBackend(Protocol):
    sample_rate: int
    name: str

    def load(self) -> None:
        """Load the weights and run one warm-up decode."""

    def transcribe(self, audio: np.ndarray, prompt: str, language: str | None, thorough: bool = True) -> list[Word]:
        """Transcribe float32 mono audio at `sample_rate`. `prompt` is text said just before this audio.
        `thorough` False (a quick partial) may return nothing rather than spend a second, slower decode."""
