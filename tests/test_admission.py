"""Admission learns what the machine holds: late media lowers the ceiling, time without it raises it again."""

import pytest

from services.gateway.admission import Admission
from services.gateway.playback import Playback
from tests.manual_clock import ManualClock

pytestmark = pytest.mark.unit


def test_late_media_lowers_the_ceiling_to_one_below_the_conversations_open_and_a_quiet_while_raises_it():
    clock = ManualClock()
    admission = Admission(4, relax_s=60, clock=clock)
    assert all(admission.admit() for _ in range(3)) and admission.capacity == 4
    admission.ran_late()  # three were too many
    assert admission.capacity == 2 and admission.full and not admission.admit()
    admission.release()
    admission.release()
    assert admission.admit() and admission.full  # one open, one more taken: two
    clock.now += 59
    admission.ran_late()  # late again with two open: one at most, and the while starts over
    assert admission.capacity == 1
    clock.now += 59
    assert admission.capacity == 1
    clock.now += 2
    assert admission.capacity == 2
    clock.now += 60
    assert admission.capacity == 3
    clock.now += 60
    assert admission.capacity == 4  # back to the configured ceiling, never above it
    clock.now += 600
    assert admission.capacity == 4


def test_one_conversation_is_always_admitted_and_learning_can_be_turned_off():
    admission = Admission(3, relax_s=60, clock=ManualClock())
    assert admission.admit()
    admission.ran_late()  # late with one open: the machine is slow, but one it takes
    assert admission.capacity == 1
    admission.release()
    assert admission.admit()
    fixed = Admission(3, learns=False, clock=ManualClock())
    fixed.admit(), fixed.admit()
    fixed.ran_late()
    assert fixed.capacity == 3 and fixed.admit()


def test_media_close_to_running_late_keeps_the_ceiling_at_the_conversations_open():
    clock = ManualClock()
    admission = Admission(4, relax_s=60, clock=clock)
    assert admission.admit() and admission.admit()
    admission.ran_thin()  # two hold, only just
    assert admission.capacity == 2 and not admission.admit()
    admission.ran_late()  # and then did not
    assert admission.capacity == 1
    admission.ran_thin()  # close again with two open: the lower ceiling stays, its while starts over
    clock.now += 59
    assert admission.capacity == 1
    clock.now += 2
    assert admission.capacity == 2


def test_playback_says_when_a_reply_ran_out_for_longer_than_a_moment():
    clock = ManualClock()
    late = []
    playback = Playback(clock, on_late=lambda: late.append(clock.now), late_s=0.2)
    playback.spoken(3.0)
    playback.sent(1.0)  # the first second of media
    clock.now += 1.1
    playback.sent(2.0)  # ran out 0.1 s ago: jitter, not late
    assert late == []
    clock.now += 1.5
    playback.sent(3.0)  # ran out 0.5 s ago: the user heard silence
    assert len(late) == 1
    playback.pause()  # paused (speech over the reply): silence the user asked for
    clock.now += 5
    playback.resume()
    playback.sent(3.5)
    assert len(late) == 1
