"""Where there is speech in a recording: Silero VAD probabilities per 32 ms, turned into segments."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

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


def speech_probabilities(wav: Path) -> np.ndarray:
    """One probability per 32 ms window of a 16 kHz mono WAV, read a minute at a time (an hour-long recording
    is never in memory whole)."""
    vad = SileroVad(SileroVad.load_session())
    probs = []
    with tqdm(total=sf.info(wav).duration, desc=f"finding speech in {wav.name}", unit="s",
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:
        for block in sf.blocks(wav, blocksize=WINDOW * 1875, dtype="float32"):  # 60 s
            probs += [vad.speech_probability(block[i : i + WINDOW]) for i in range(0, block.size - WINDOW + 1, WINDOW)]
            bar.update(block.size / RATE)
    return np.array(probs, np.float32)


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
