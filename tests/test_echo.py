"""Telling the reply's own echo from a person (echo.py): the microphone gets the reply 150 ms late and 24 dB
quieter, over a room with a fan; a person speaks over it, or does not."""

import numpy as np
import pytest

from core.audio import encode_linear16
from services.gateway.echo import EchoGuard
from services.gateway.playback import Playback
from tests import noises
from tests.manual_clock import ManualClock
from tests.speech import speak
from tests.voices import RATE, UNFAMILIAR, say

pytestmark = pytest.mark.unit

FRAME = RATE // 10


def _play(over: np.ndarray | None, room_db: float = -50.0) -> EchoGuard:
    """Plays a reply for 6 s in 100 ms steps, its echo in the microphone; `over` spoken from 3 s on."""
    reply = speak("One day a brave dragon flew over the mountains, and far below him the sea shone like glass.")
    clock, guard = ManualClock(), EchoGuard("linear16", RATE)
    playback = Playback(clock)
    playback.sent(reply.size / RATE, encode_linear16(reply))
    delay, gain = int(0.15 * RATE), 10 ** (-24 / 20)
    echo = np.zeros(6 * RATE, np.float32)
    echo[delay : delay + reply.size] = reply[: echo.size - delay] * gain
    mic = echo + noises.room_with_fan(6.0) * 10 ** (room_db / 20)
    if over is not None:
        mic[3 * RATE : 3 * RATE + over.size] += over[: 3 * RATE]
    for start in range(0, mic.size, FRAME):
        clock.now += 0.1
        guard.heard(encode_linear16(mic[start : start + FRAME]), playback)
    return guard


@pytest.mark.parametrize("room_db", [-60.0, -45.0])
def test_the_echo_alone_is_no_one_else(room_db):
    assert not _play(None, room_db).someone_else_during(0.0, 6.0)


@pytest.mark.parametrize("voice", UNFAMILIAR[:3], ids=lambda v: v.name)
def test_a_person_speaking_over_the_echo_is_someone_else(voice):
    question = say("Wait, what about the ocean?", voice).samples * 0.5
    guard = _play(question)
    assert guard.someone_else_during(3.3, 4.0) and not guard.someone_else_during(0.0, 3.0)  # while it speaks
