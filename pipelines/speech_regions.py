"""Where there is speech in a recording, with faster-whisper's Silero VAD: a probability per 32 ms window (what
clip planning cuts by) and the speech segments."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from faster_whisper.vad import VadOptions, get_speech_timestamps, get_vad_model
from tqdm import tqdm

from core.asr.vad import WINDOW

RATE = 16000
STEP_S = WINDOW / RATE
BLOCK = WINDOW * 1875  # 60 s


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
    model = get_vad_model()
    probs = []
    with tqdm(total=sf.info(wav).duration, desc=f"finding speech in {wav.name}", unit="s",
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:
        for block in sf.blocks(wav, blocksize=BLOCK, dtype="float32"):
            whole = block[: block.size - block.size % WINDOW]
            if whole.size:
                probs.append(np.asarray(model(whole), np.float32).reshape(-1))
            bar.update(block.size / RATE)
    return np.concatenate(probs) if probs else np.zeros(0, np.float32)


def speech_segments(wav: Path, threshold: float = 0.5, min_speech_s: float = 0.25, min_gap_s: float = 0.2,
                    pad_s: float = 0.05) -> list[Segment]:
    """Runs of speech (above `threshold`, until below it less 0.15), gaps shorter than `min_gap_s` closed, runs
    shorter than `min_speech_s` dropped, each padded by `pad_s`."""
    audio, _ = sf.read(wav, dtype="float32")
    options = VadOptions(threshold=threshold, min_speech_duration_ms=int(min_speech_s * 1000),
                         min_silence_duration_ms=int(min_gap_s * 1000), speech_pad_ms=int(pad_s * 1000))
    return [Segment(run["start"] / RATE, run["end"] / RATE) for run in get_speech_timestamps(audio, options, RATE)]
