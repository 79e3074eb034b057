"""Test speech made offline with the packaged Piper voice, and a WER to judge transcripts by."""

import functools
import re

import numpy as np

from core.audio import resample
from core.tts.backends.piper_voice import PiperBackend
from core.tts.text_normalizer import normalize

# Sentences no test or model was tuned on; numbers and names are spelled as the voice reads them.
SENTENCES = [
    "The weather is lovely today, so we are going for a walk in the park.",
    "Could you please send me the report before the meeting tomorrow morning?",
    "My favorite food is pasta with fresh tomatoes and a little cheese.",
    "The train to the city leaves every twenty minutes from platform four.",
    "She opened the window and listened to the birds singing outside.",
    "We need to buy milk, bread and eggs on the way home.",
    "The children built a big castle out of sand on the beach.",
    "It is important to drink enough water when the days are hot.",
    "He forgot his keys at the office and had to go back.",
    "The library closes at six o'clock on Saturdays.",
    "Learning a new language takes patience and a lot of practice.",
    "Please turn off the lights when you leave the room.",
]


@functools.cache
def voice() -> PiperBackend:
    backend = PiperBackend()
    backend.load()
    return backend


def speak(text: str, rate: int = 16000) -> np.ndarray:
    """float32 speech for `text` at `rate`."""
    backend = voice()
    utterance = backend.synthesize(normalize(text), 1.0)
    return resample(utterance.audio, backend.voice.sample_rate, rate)


def library_whisper(threads: int = 2):
    """Whisper base as its library runs it (faster-whisper), to hold the service's transcripts against."""
    from faster_whisper import WhisperModel

    from core.asr.backends.whisper_ct2 import packaged_model_files

    return WhisperModel("whisper-base", device="cpu", compute_type="int8", cpu_threads=threads,
                        files=packaged_model_files())


def library_text(library, samples: np.ndarray) -> str:
    """The library's own decode of a whole clip: one 30 s window, 5 beams."""
    segments, _ = library.transcribe(samples, language="en", beam_size=5)
    return " ".join(segment.text for segment in segments)


def to_linear16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def words(text: str) -> list[str]:
    text = normalize(text).lower().replace("-", " ")
    return re.sub(r"[^a-z0-9' ]+", " ", text).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length)."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[len(hyp)], len(ref)


def wer(pairs: list[tuple[str, str]]) -> float:
    errors = total = 0
    for reference, hypothesis in pairs:
        e, n = word_errors(reference, hypothesis)
        errors += e
        total += n
    return errors / max(total, 1)


def says_twice(transcript: str) -> bool:
    """Some three words in a row come twice: the recogniser looped ("what is your name what is your name")."""
    words = [w.strip(",.?!").lower() for w in transcript.split()]
    trigrams = list(zip(words, words[1:], words[2:]))
    return len(set(trigrams)) != len(trigrams)
