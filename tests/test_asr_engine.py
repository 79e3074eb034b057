"""The streaming recogniser's decode timing, with the real VAD and a backend that only counts its decodes."""

import asyncio
import time

import numpy as np
import pytest

from core.asr.backends.base_backend import Word
from core.asr.vad import SileroVad
from services.asr.engine import RecognizerConfig, StreamingRecognizer, Transcript, TurnEnded
from tests.voices import RATE, UNFAMILIAR, say

pytestmark = pytest.mark.unit

CHUNK = RATE // 10


class CountingBackend:
    sample_rate = RATE
    name = "counting"

    def __init__(self):
        self.decoded_at: list[float] = []

    def transcribe(self, audio, prompt, language, thorough=True):
        self.decoded_at.append(time.monotonic())
        time.sleep(0.05)
        return [Word("words", 0.0, audio.size / RATE, 0.9)]


def two_phrases_with_a_short_pause() -> np.ndarray:
    first, second = say("Hello there.", UNFAMILIAR[0]), say("How are you?", UNFAMILIAR[0])
    pause = np.zeros(int(0.3 * RATE), np.float32)  # past the 0.2 s pause decode, short of the 0.5 s end of turn
    return np.concatenate([first.samples[: int(first.voiced_end_s * RATE)], pause, second.samples[RATE // 4 :],
                           np.zeros(RATE, np.float32)])


async def recognise(audio: np.ndarray, real_time: bool, burst_s: float = 0.0):
    """Events and decode times for `audio` sent in 100 ms chunks, in real time or at once; with `burst_s`, that
    much of its start comes at once first (a renewed stream's audio sent again)."""
    backend = CountingBackend()
    recogniser = StreamingRecognizer(backend, SileroVad(SileroVad.load_session()), RecognizerConfig(partials=False),
                                     asyncio.Lock())

    async def chunks():
        for start in range(0, audio.size, CHUNK):
            await asyncio.sleep(CHUNK / RATE if real_time and start >= burst_s * RATE else 0)
            yield audio[start : start + CHUNK]

    events = [(event, time.monotonic()) async for event in recogniser.run(chunks())]
    return backend.decoded_at, events


async def test_a_recording_sent_at_once_is_decoded_once_per_turn():
    decoded_at, events = await recognise(two_phrases_with_a_short_pause(), real_time=False)
    finals = [e for e, _ in events if isinstance(e, Transcript) and e.is_final]
    assert len(finals) == 1 and finals[0].text == "words"
    assert len(decoded_at) == 1, "the pause inside the turn was decoded although the rest of it had already come"


async def test_speech_in_real_time_is_decoded_in_the_pause_before_the_end_of_turn():
    decoded_at, events = await recognise(two_phrases_with_a_short_pause(), real_time=True)
    (ended_at,) = [t for e, t in events if isinstance(e, TurnEnded)]
    assert decoded_at and decoded_at[-1] < ended_at, "the final was not decoded ahead of the end of turn"


async def test_a_burst_sent_again_at_the_start_does_not_hold_the_pause_decode_of_speech_that_follows():
    audio = np.concatenate([np.zeros(int(1.5 * RATE), np.float32), two_phrases_with_a_short_pause()])
    decoded_at, events = await recognise(audio, real_time=True, burst_s=2.0)
    (ended_at,) = [t for e, t in events if isinstance(e, TurnEnded)]
    assert decoded_at and decoded_at[-1] < ended_at, "the final was not decoded ahead of the end of turn"
