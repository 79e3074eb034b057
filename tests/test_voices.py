"""The benchmarks' clock starts at the last voiced sample of what the user said, not at the end of the buffer."""

import numpy as np
import pytest

from tests import noises
from tests.voices import RATE, UNFAMILIAR, last_voiced_sample, say

pytestmark = pytest.mark.unit


def test_the_mark_is_where_the_voice_stops_not_where_the_buffer_ends():
    t = np.arange(RATE) / RATE
    voiced = (0.3 * np.sin(2 * np.pi * 180 * t) * np.exp(-2 * t)).astype(np.float32)  # 1 s, fading out
    buffer = np.concatenate([np.zeros(RATE // 4, np.float32), voiced, np.zeros(3 * RATE // 2, np.float32)])
    end = last_voiced_sample(buffer) / RATE
    assert 1.2 <= end <= 1.26, end  # the tone ends at 1.25 s; the buffer at 2.75 s


def test_a_recordings_room_and_breath_after_the_voice_are_not_voice():
    t = np.arange(RATE) / RATE
    voiced = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)  # 1 s
    floor = np.random.default_rng(0).normal(0, 0.003, RATE * 3).astype(np.float32)  # -37 dB under the voice
    floor[RATE // 4 + RATE : RATE // 4 + RATE + RATE // 2] *= 3  # a breath after it, 10 dB over the room
    floor[RATE // 4 : RATE // 4 + RATE] += voiced
    end = last_voiced_sample(floor) / RATE
    assert 1.24 <= end <= 1.26, end  # the voice ends at 1.25 s


def test_unfamiliar_voices_carry_their_voiced_end_and_noise_does_not_move_it():
    for voice in UNFAMILIAR:
        clean, noisy = say("What should I cook for dinner tonight?", voice), say(
            "What should I cook for dinner tonight?", voice.noisy())
        duration = clean.samples.size / RATE
        assert 0.8 < clean.voiced_end_s < duration - 0.1, (voice.name, clean.voiced_end_s, duration)
        assert noisy.voiced_end_s == clean.voiced_end_s
        tail = noisy.samples[int(noisy.voiced_end_s * RATE):]
        assert np.std(tail) > 0.001, "no noise under the noisy voice"


def test_noise_is_mixed_at_the_asked_signal_to_noise_ratio():
    speech = say("The weather is lovely today.", UNFAMILIAR[0]).samples
    noise = noises.room_with_fan(speech.size / RATE)
    mixed = noises.mix_at_snr(speech, noise, 20.0)
    voiced = np.abs(speech) > 0.02 * np.abs(speech).max()
    snr = 10 * np.log10(np.mean(speech[voiced] ** 2) / np.mean((mixed - speech)[voiced] ** 2))
    assert 19.0 < snr < 21.0, snr
