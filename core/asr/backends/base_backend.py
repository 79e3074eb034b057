"""The one small interface every ASR backend implements."""

import re
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np


Effort = Literal["partial", "pause", "final"]


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


def cut_loop(words: list[Word], shortest: int = 2) -> list[Word]:
    """The words up to the first saying of a phrase (of `shortest` words or more) that repeats back to back to
    the end.

    Whisper's loops run until the decode stops, so a repetition reaching the end — the last copy possibly
    unfinished — is taken for one; a phrase repeated mid-sentence is left alone."""
    keys = [w.key for w in words]
    count = len(keys)
    for start in range(count):
        for period in range(shortest, (count - start) // 2 + 1):
            if all(keys[i] == keys[i - period] for i in range(start + period, count)):
                return words[: start + period]
    return words


class AsrBackend(Protocol):
    sample_rate: int
    name: str
    final_differs: bool  # whether a final's effort reads more than a pause's

    def load(self) -> None:
        """Load the weights and run one warm-up decode."""

    def transcribe(self, audio: np.ndarray, prompt: str, language: str | None, effort: Effort = "final",
                   vocabulary: tuple[str, ...] = ()) -> list[Word]:
        """Transcribe float32 mono audio at `sample_rate`. `prompt` is text said just before this audio.
        `vocabulary`: names and terms the speaker may say. `effort`: "partial" (quick, mid-speech) may return
        nothing rather than spend a second, slower decode; "pause" (the words a turn's end is judged by) may not;
        "final" (the turn's transcript) may also spend more for fewer errors."""
