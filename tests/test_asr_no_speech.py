"""Whisper's silence rule in the packaged backend: a cough or a fan the voice detector let through is no words
(Whisper alone reads them as "you" or a made-up sentence), while a one-word interjection still is."""

import numpy as np
import pytest

from core.asr.backends.whisper_ct2 import WhisperCt2Backend
from tests import noises
from tests.voices import RATE, UNFAMILIAR, say

pytestmark = pytest.mark.contract

QUIET = np.zeros(RATE // 3, np.float32)


@pytest.fixture(scope="module")
def whisper() -> WhisperCt2Backend:
    backend = WhisperCt2Backend()
    backend.load()
    return backend


@pytest.mark.parametrize("sound", [noises.cough(), noises.cough(seed=3), noises.room_with_fan(2.0) * 0.05],
                         ids=["cough", "another cough", "fan"])
def test_a_sound_that_is_not_speech_gives_no_words(whisper, sound):
    audio = np.concatenate([QUIET, sound, QUIET]).astype(np.float32)
    for effort in ("partial", "pause", "final"):
        assert whisper.transcribe(audio, "", "en", effort) == []


@pytest.mark.parametrize("voice", UNFAMILIAR, ids=lambda v: v.name)
def test_a_one_word_interjection_is_still_heard(whisper, voice):
    audio = np.concatenate([say("Stop!", voice).samples, QUIET]).astype(np.float32)
    assert "stop" in " ".join(w.text for w in whisper.transcribe(audio, "", "en")).lower()
