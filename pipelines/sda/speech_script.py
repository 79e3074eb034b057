"""Speech for synthetic clips: random sentences spoken by a TTS voice, and the mouth shapes they call for.

The opening and the rounding of each video frame come from the viseme being spoken at that moment (phoneme
timings from the voice), smoothed over neighbouring frames as real lips coarticulate (rounding over more of
them: lips round ahead of a rounded vowel), and neutral wherever the audio is silent.
"""

import random
from dataclasses import dataclass

import numpy as np

from core.audio import resample
from core.tts.backends.base_backend import TtsBackend
from core.tts.visemes import viseme_of

OPENING_OF_VISEME = {
    "aa": 1.0, "O": 0.8, "E": 0.65, "hh": 0.45, "I": 0.45, "RR": 0.35, "U": 0.35, "kk": 0.35,
    "DD": 0.3, "CH": 0.3, "TH": 0.25, "SS": 0.2, "FF": 0.1, "PP": 0.0, "sil": 0.0,
}
ROUNDING_OF_VISEME = {  # 1 rounded and pushed forward, -1 spread
    "U": 1.0, "O": 0.7, "CH": 0.6, "RR": 0.5, "aa": -0.1, "E": -0.4, "SS": -0.4, "I": -0.8, "TH": -0.2,
    "DD": -0.1, "kk": 0.0, "hh": 0.0, "FF": 0.0, "PP": 0.0, "sil": 0.0,
}
_WORDS = (
    "the a my your our this that some every one two three four five big small old new good bad happy sad "
    "red blue green yellow black white dog cat bird fish horse mouse tree flower house garden street city "
    "river mountain beach sea sky sun moon star rain snow wind morning evening night day week year time "
    "friend mother father sister brother teacher doctor child people man woman water coffee tea bread apple "
    "orange music song book letter story picture window door table chair car train bus bike road bridge "
    "walks runs sings reads writes opens closes watches finds keeps takes gives makes likes loves needs wants "
    "sees hears knows thinks eats drinks plays works sleeps waits helps calls brings buys sells builds paints "
    "quickly slowly quietly always never often today tomorrow yesterday here there again together outside "
    "inside under over near behind before after with without about because while when where why how "
    "beautiful wonderful strange simple quiet loud bright dark warm cold soft early late busy free"
).split()


def random_sentences(count: int, seed: int) -> list[str]:
    """Varied word sequences (4-14 words) that cover English phonemes; a seed gives a reproducible set."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        words = rng.choices(_WORDS, k=rng.randint(4, 14))
        end = rng.choice([".", ".", "?", "!"])
        if len(words) > 7 and rng.random() < 0.5:
            words[rng.randint(3, len(words) - 3)] += ","
        sentences.append(" ".join(words).capitalize() + end)
    return sentences


@dataclass(frozen=True)
class SpokenClip:
    audio: np.ndarray  # float32 mono at `sample_rate`, a whole number of frames long
    openings: np.ndarray  # (frames,) mouth opening per video frame, 0..1
    roundings: np.ndarray  # (frames,) lip rounding per video frame, -1 spread..1 rounded
    text: str


def shapes_for(phonemes, frames: int, fps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame opening and rounding from phoneme timings (seconds)."""
    opening = np.zeros(frames, dtype=np.float32)
    rounding = np.zeros(frames, dtype=np.float32)
    centers = (np.arange(frames) + 0.5) / fps
    for p in phonemes:
        inside = (centers >= p.start_s) & (centers < p.end_s)
        opening[inside] = OPENING_OF_VISEME[viseme_of(p.symbol)]
        rounding[inside] = ROUNDING_OF_VISEME[viseme_of(p.symbol)]
    opening = np.convolve(opening, np.array([0.2, 0.6, 0.2], dtype=np.float32), mode="same")
    rounding = np.convolve(rounding, np.array([0.1, 0.2, 0.4, 0.2, 0.1], dtype=np.float32), mode="same")
    return opening, rounding


def loudness_gate(audio: np.ndarray, frames: int, samples_per_frame: int) -> np.ndarray:
    """1 where a frame's audio is voiced, fading to 0 where it is silent."""
    rms = np.sqrt((audio[: frames * samples_per_frame].reshape(frames, -1) ** 2).mean(axis=1))
    return np.clip((rms - 0.004) / 0.02, 0, 1).astype(np.float32)


def speak_clip(voice: TtsBackend, text: str, sample_rate: int, fps: int, lead_s: float = 0.2) -> SpokenClip:
    """Speak `text`, with `lead_s` of silence before and after, and derive the per-frame mouth shapes."""
    from core.tts.backends.base_backend import Phoneme

    utterance = voice.synthesize(text, 1.0)
    audio = resample(utterance.audio, voice.voice.sample_rate, sample_rate)
    lead = int(lead_s * sample_rate)
    spf = sample_rate // fps
    total = audio.size + 2 * lead
    frames = -(-total // spf)
    padded = np.zeros(frames * spf, dtype=np.float32)
    padded[lead : lead + audio.size] = audio
    shifted = [Phoneme(p.symbol, p.start_s + lead_s, p.end_s + lead_s) for p in utterance.phonemes]
    opening, rounding = shapes_for(shifted, frames, fps)
    voiced = loudness_gate(padded, frames, spf)
    return SpokenClip(padded, opening * voiced, rounding * voiced, text)
