"""Voices the models were not built around, for benchmarks that measure what a stranger gets.

Six espeak-ng voices of different sex, accent, pitch and rate (the TTS speaks with Piper's joe, and the face was
trained on it), each also with a room and a laptop fan under it at 20 dB SNR. Every utterance carries the moment
its last voiced sample ends — the honest start of the clock, not the end of a buffer with its trailing silence.
"""

import functools
import io
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile

from core.audio import resample
from tests import noises

RATE = 16000


@dataclass(frozen=True)
class Voice:
    name: str
    espeak: str  # espeak-ng voice+variant
    pitch: int  # 0-99, espeak's default 50
    words_per_minute: int  # espeak's default 175
    snr_db: float | None = None  # noise mixed under the speech

    @property
    def family(self) -> str:
        return self.name.split(" ")[0]

    def noisy(self, snr_db: float = 20.0) -> "Voice":
        return Voice(f"{self.name} + room/fan {snr_db:.0f} dB", self.espeak, self.pitch, self.words_per_minute, snr_db)


UNFAMILIAR = (
    Voice("us-male", "en-us", 45, 165),
    Voice("us-female", "en-us+f3", 70, 170),
    Voice("gb-male-slow", "en-gb", 35, 135),
    Voice("scottish-female", "en-gb-scotland+f2", 60, 160),
    Voice("caribbean-male-fast", "en-029", 50, 200),
    Voice("rp-female-low", "en-gb-x-rp+f4", 30, 150),
)


@dataclass(frozen=True)
class Utterance:
    samples: np.ndarray  # float32, RATE Hz, with a little silence before the speech
    voiced_end_s: float  # where the last voiced sample ends


@functools.cache
def say(text: str, voice: Voice) -> Utterance:
    wav = subprocess.run(["espeak-ng", "-v", voice.espeak, "-p", str(voice.pitch), "-s", str(voice.words_per_minute),
                          "--stdout", text], capture_output=True, check=True).stdout
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return utterance(audio, rate, voice.snr_db, seed=len(text))


def utterance(speech: np.ndarray, rate: int, snr_db: float | None = None, seed: int = 0) -> Utterance:
    """Speech at RATE with a quarter second of quiet before it, the end of its last voiced sample (marked on the
    clean speech), and the room and fan under it at `snr_db` when given."""
    speech = np.concatenate([np.zeros(RATE // 4, np.float32), resample(speech, rate, RATE)])
    end = last_voiced_sample(speech)
    if snr_db is not None:
        speech = noises.mix_at_snr(speech, noises.room_with_fan(speech.size / RATE, seed=seed), snr_db)
    return Utterance(speech, end / RATE)


def last_voiced_sample(samples: np.ndarray, frame: int = RATE // 100) -> int:
    """The end of the last 10 ms frame whose energy is within 35 dB of the loudest frame's and 12 dB above the
    recording's floor (its 10th-percentile frame: the room and the breath a real recording carries)."""
    frames = samples[: samples.size // frame * frame].reshape(-1, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    gate = max(rms.max() * 10 ** (-35 / 20), np.percentile(rms, 10) * 10 ** (12 / 20))
    voiced = np.flatnonzero(rms > gate)
    return int((voiced[-1] + 1) * frame) if voiced.size else 0


# Short questions: Whisper on a short window tended to say them again and again.
QUESTIONS = ("Hello! How are you today?", "What is your name?", "What should I cook for dinner?",
             "Tell me something about the ocean.", "What is your favorite season?")

# Sentences a person stops in to think, as (the words before the pause, the rest).
HESITATIONS = (("I would like to", "book a table for two."), ("Can you tell me about", "the history of Rome?"),
               ("I was thinking that", "we could go to the park."), ("My favourite colour is, um", "blue."),
               ("So, and then I", "went home."), ("Could you remind me of the", "name of that song?"))


def hesitation(head: str, tail: str, voice: Voice, pause_s: float) -> np.ndarray:
    """`head`, `pause_s` of silence from its last voiced sample, then `tail`, in `voice`."""
    first = say(head, voice)
    pause = np.zeros(int(pause_s * RATE), np.float32)
    return np.concatenate([first.samples[: int(first.voiced_end_s * RATE)], pause, say(tail, voice).samples])
