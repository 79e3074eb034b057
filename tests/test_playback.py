"""What the user has heard of a reply, from the media sent and the client's clock (playback.py)."""

import numpy as np
import pytest

from services.gateway.playback import CLIENT_JITTER_S as JITTER
from services.gateway.playback import Playback
from services.gateway.stages import OUTPUT_RATE
from tests.manual_clock import ManualClock

pytestmark = pytest.mark.unit


def tone(seconds: float, level: int) -> bytes:
    return np.full(int(seconds * OUTPUT_RATE), level, np.int16).tobytes()


def test_a_client_that_ran_out_goes_on_from_where_it_stopped():
    clock = ManualClock(100.0)
    playback = Playback(clock)
    playback.spoken(1.0, "One day a dragon")
    playback.sent(1.0, tone(1.0, 100))
    clock.now += JITTER
    assert playback.heard_s() == 0.0  # the player's jitter buffer: nothing heard yet
    clock.now += 3.0  # the stages fell behind: the client played its second and waited two
    assert playback.heard_s() == 1.0
    playback.spoken(1.0, "flew over the sea")
    playback.sent(2.0, tone(1.0, 200))
    clock.now += JITTER + 0.5  # it goes on a jitter buffer after the media came
    assert playback.heard_s() == pytest.approx(1.5)
    assert playback.heard_text() == "One day a dragon flew over"
    assert playback.audio_heard(0.25).mean() == pytest.approx(200 / 32768)  # the second second is playing


def test_a_pause_holds_the_position_and_a_resume_goes_on_from_it():
    clock = ManualClock(100.0)
    playback = Playback(clock)
    playback.sent(4.0, tone(4.0, 100))
    clock.now += JITTER + 1.0
    playback.pause()
    clock.now += 2.0
    assert playback.heard_s() == 1.0 and playback.paused
    playback.resume()
    clock.now += 0.5
    assert playback.heard_s() == pytest.approx(1.5)
    playback.sent(5.0, tone(1.0, 100))  # more media while the client still has some: no new start
    clock.now += 1.0
    assert playback.heard_s() == pytest.approx(2.5)


def test_the_speakers_are_quiet_where_the_client_ran_out_or_paused():
    clock = ManualClock(100.0)
    playback = Playback(clock)
    playback.sent(1.0, tone(1.0, 100))
    clock.now += JITTER + 1.38  # played its second, then waited for more
    playback.sent(2.0, tone(1.0, 200))
    clock.now += JITTER + 0.5  # and played the next half second a jitter buffer after it came
    playback.pause()
    clock.now += 0.5
    heard = playback.audio_heard(2.5) * 32768
    rate = heard.size // 25  # samples a tenth of a second
    assert (heard[: 10 * rate] == 100).all()  # its first second
    assert (heard[10 * rate : 15 * rate] == 0).all()  # run out
    assert (heard[15 * rate : 20 * rate] == 200).all()  # the next half second
    assert (heard[20 * rate :] == 0).all()  # paused


def test_media_sent_far_ahead_of_what_plays_is_still_the_sound_the_echo_check_compares_with():
    clock = ManualClock(100.0)
    playback = Playback(clock)
    playback.sent(8.0, tone(8.0, 100))  # the stages made the reply faster than it plays
    clock.now += 1.9
    assert (playback.audio_heard(1.5) * 32768 == 100).all()  # 0.4-1.9 s of it
    clock.now += 3.0
    assert (playback.audio_heard(1.5) * 32768 == 100).all()


def test_what_played_before_the_audio_kept_is_silence_not_an_error():
    clock = ManualClock(100.0)
    playback = Playback(clock)
    playback.sent(130.0, tone(130.0, 100))  # more than the two minutes kept, sent at once
    clock.now += 1.9
    heard = playback.audio_heard(1.5)  # 0.4-1.9 s of it: not kept
    assert heard.size == round(1.5 * OUTPUT_RATE) and not heard.any()
    clock.now += 10.0  # 10.4-11.9 s: kept
    assert (playback.audio_heard(1.5) * 32768 == 100).all()


def test_text_given_to_speech_and_not_begun_counts_ahead_at_the_replys_own_pace():
    clock = ManualClock(100.0)
    playback = Playback(clock)
    first = "Once upon a time, there was a dragon."  # 30 letters
    assert playback.lead_s(30) == pytest.approx(30 / 14)  # nothing spoken yet: a voice's usual pace
    playback.spoken(2.0, first)  # this voice: 15 letters a second
    playback.sent(2.0, tone(2.0, 100))
    clock.now += JITTER + 0.5
    assert playback.lead_s(30) == pytest.approx(1.5)  # all given is begun: the audio made ahead of the listener
    assert playback.lead_s(30 + 60) == pytest.approx(1.5 + 4.0)  # and four seconds more to be made


def test_the_player_starts_a_jitter_buffer_after_the_first_media_and_after_running_out():
    clock = ManualClock(100.0)
    playback = Playback(clock)
    playback.sent(1.0, tone(1.0, 100))
    assert playback.left_s() == pytest.approx(JITTER + 1.0)
    clock.now += JITTER + 0.4
    assert playback.heard_s() == pytest.approx(0.4)
    clock.now += 0.8  # ran out 0.2 s ago
    assert playback.left_s() == pytest.approx(-0.2)
    playback.sent(2.0, tone(1.0, 100))
    clock.now += JITTER
    assert playback.heard_s() == pytest.approx(1.0) and playback.left_s() == pytest.approx(1.0)


def test_late_and_thin_media_are_told_as_the_player_would_meet_them():
    clock = ManualClock(100.0)
    late, thin = [], []
    playback = Playback(clock, on_late=lambda: late.append(clock.now), on_thin=lambda: thin.append(clock.now))
    for frame in range(1, 26):  # a second of frames, each 40 ms of media made in 40 ms: the buffer holds
        playback.sent(frame * 0.04)
        clock.now += 0.04
    assert late == [] and thin == []
    clock.now += JITTER - 0.02  # the next frame comes 20 ms before the player needs it: close
    playback.sent(1.04)
    playback.sent(1.08)
    assert late == [] and len(thin) == 1  # once a run
    clock.now += 0.1  # 20 ms after it ran out
    playback.sent(1.12)
    assert len(late) == 1
    clock.now += 0.02
    playback.sent(1.16)  # a new run, a jitter buffer ahead of its player: not thin
    assert len(thin) == 1
    playback.pause()  # paused (speech over the reply): silence the user asked for, not late
    clock.now += 5
    playback.resume()
    playback.sent(1.2)
    assert len(late) == 1
