"""The LJSpeech folder layout Coqui trains from: `wavs/<id>.wav` and `metadata.csv` (`id|text|normalized`)."""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from core.atomic import write_text
from core.audio import resample
from core.tts.text_normalizer import normalize

SAMPLE_RATE = 22050


@dataclass(frozen=True)
class Utterance:
    id: str
    text: str
    audio: np.ndarray  # float32 mono
    sample_rate: int


def write_ljspeech(folder: Path, utterances: Iterable[Utterance]) -> int:
    """Writes (or rewrites) an LJSpeech folder at 22,050 Hz; returns how many utterances it holds."""
    wavs = folder / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in utterances:
        if "|" in item.id or "/" in item.id:
            raise ValueError(f"utterance id {item.id!r} may not contain '|' or '/'")
        audio = resample(item.audio.astype(np.float32), item.sample_rate, SAMPLE_RATE)
        peak = float(np.abs(audio).max(initial=0.0))
        if peak > 0.95:
            audio = audio * (0.95 / peak)
        sf.write(wavs / f"{item.id}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
        text = " ".join(item.text.replace("|", " ").split())
        rows.append((item.id, text, normalize(text)))
    write_text(folder / "metadata.csv", "".join("|".join(row) + "\n" for row in rows))
    return len(rows)


def read_metadata(folder: Path) -> list[tuple[str, str]]:
    """(id, normalized text) pairs."""
    lines = (folder / "metadata.csv").read_text().splitlines()
    return [(row[0], row[-1]) for row in (line.split("|") for line in lines if line)]
