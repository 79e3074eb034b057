"""The audio watermark: generated speech marked, found again after the gateway's Opus, never found on people."""

import numpy as np
import pytest

from core.audio import resample
from core.provenance.watermark import DEFAULT_WATERMARK_DIR, MARKED, Watermark
from services.gateway.config import GatewaySettings
from services.gateway.stages import OUTPUT_RATE
from services.tts.config import TtsSettings
from tests import human_speech
from tests.media_files import through_opus
from tests.speech import speak
from tests.voices import RATE, UNFAMILIAR, say

SENTENCE = "Could you tell me the way to the station, and how long it takes to walk there?"


@pytest.fixture(scope="module")
def watermark() -> Watermark:
    return Watermark(DEFAULT_WATERMARK_DIR)


def test_marked_speech_is_found_and_unmarked_speech_is_not(watermark):
    for voice in UNFAMILIAR:
        plain = say(SENTENCE, voice).samples
        marked = watermark.mark(plain, RATE)
        assert marked.shape == plain.shape and marked.dtype == np.float32
        assert watermark.score(marked, RATE) >= MARKED, voice.name
        assert watermark.score(plain, RATE) < MARKED, voice.name


def test_the_mark_is_quiet_beside_the_speech(watermark):
    plain = speak(SENTENCE)
    change = watermark.mark(plain, 16000, TtsSettings.model_fields["watermark_strength"].default) - plain
    ratio_db = 10 * np.log10((plain**2).sum() / (change**2).sum())
    assert ratio_db > 10, f"the mark is only {ratio_db:.1f} dB below the speech"
    spectrum = np.abs(np.fft.rfft(change))
    below_2k = spectrum[: spectrum.size * 2000 // 8000]
    assert (below_2k**2).sum() > 0.95 * (spectrum**2).sum()  # the change stays under 2 kHz, as the model puts it


def test_people_reading_carry_no_mark(watermark):
    for recording in human_speech.RECORDINGS:
        audio = human_speech.hear(recording).samples
        rate = RATE
        assert watermark.score(audio, rate) < MARKED, recording.name
        assert watermark.score(watermark.mark(audio, rate), rate) >= MARKED, recording.name


def test_the_mark_survives_the_gateways_opus(watermark):
    """At the strength the TTS stage marks with, through Opus as the gateway sends a reply's audio."""
    strength = TtsSettings.model_fields["watermark_strength"].default
    kbps, rate = GatewaySettings.model_fields["opus_kbps"].default, OUTPUT_RATE
    for plain in [speak(SENTENCE), *(say(SENTENCE, voice).samples for voice in UNFAMILIAR)]:
        plain = resample(plain, 16000, rate)
        assert watermark.score(through_opus(watermark.mark(plain, rate, strength), rate, kbps), rate) >= MARKED
        assert watermark.score(through_opus(plain, rate, kbps), rate) < MARKED


def test_silence_and_scraps_are_left_alone(watermark):
    assert watermark.score(np.zeros(16000, np.float32), 16000) == 0.0
    scrap = speak(SENTENCE)[:400]
    assert np.array_equal(watermark.mark(scrap, 16000), scrap)
    assert watermark.score(scrap, 16000) == 0.0
