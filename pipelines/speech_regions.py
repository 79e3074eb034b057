"""Where there is speech in a recording: Silero VAD probabilities per 32 ms, turned into segments."""

from dataclasses import dataclass

import numpy as np

from core.asr.vad import WINDOW, SileroVad

RATE = 16000
STEP_S = WINDOW / RATE


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """One probability per 32 ms window of 16 kHz audio."""
    vad = SileroVad(SileroVad.load_session())
    count = audio.size // WINDOW
    return np.array([vad.speech_probability(audio[i * WINDOW : (i + 1) * WINDOW]) for i in range(count)], np.float32)


def speech_segments(probs: np.ndarray, threshold: float = 0.5, min_speech_s: float = 0.25,
                    min_gap_s: float = 0.2, pad_s: float = 0.05) -> list[Segment]:
    """Runs of speech (hysteresis around `threshold`), with gaps shorter than `min_gap_s` closed."""
    on, off = threshold, threshold - 0.15
    runs, start, speaking = [], 0, False
    for i, p in enumerate(probs):
        if not speaking and p >= on:
            speaking, start = True, i
        elif speaking and p < off:
            speaking = False
            runs.append([start, i])
    if speaking:
        runs.append([start, len(probs)])
    merged: list[list[int]] = []
    for run in runs:
        if merged and (run[0] - merged[-1][1]) * STEP_S < min_gap_s:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    total = len(probs) * STEP_S
    return [
        Segment(max(0.0, a * STEP_S - pad_s), min(total, b * STEP_S + pad_s))
        for a, b in merged
        if (b - a) * STEP_S >= min_speech_s
    ]
