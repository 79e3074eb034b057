"""Fewer pictures before a late reply (load_shedding.py): a reply whose animation falls behind real time sheds
pictures step by step, gets them back once it is comfortably ahead, and sheds none when speech synthesis is what
is slow."""

import pytest

from services.gateway.load_shedding import LoadShedding
from services.gateway.playback import Playback
from services.gateway.stages import VideoOut
from tests.manual_clock import ManualClock

pytestmark = pytest.mark.unit

TICK = 0.1


class Reply:
    """A reply made at `pace` seconds of media a second (from speech already made `spoken_s` ahead), played in
    real time, with the shedding checked every tick."""

    def __init__(self, spoken_s: float):
        self.clock = ManualClock(50.0)
        self.playback = Playback(self.clock)
        self.video = VideoOut()
        self.warnings: list[dict] = []
        self.shedding = LoadShedding(self.video, self.playback, lambda w: self.warnings.append(w | {"at": self.clock.now}))
        self.spoken = 0.0
        self.speak(spoken_s)
        self.sent = 0.0
        self.late = 0  # ticks the client had nothing to play while the reply was not all sent

    def speak(self, seconds: float) -> None:
        self.playback.spoken(seconds)
        self.spoken += seconds

    def run(self, seconds: float, pace) -> None:
        for _ in range(round(seconds / TICK)):
            self.clock.now += TICK
            if 0 < self.sent < self.spoken and self.playback.buffered_s() <= 0:
                self.late += 1
            self.sent = min(self.sent + pace(self.video.picture_every) * TICK, self.spoken)
            self.playback.sent(self.sent)
            self.shedding.check()

    @property
    def steps(self) -> list[str]:
        return [w["pictures"] for w in self.warnings]


def cost_per_picture(pictures_a_second: float):
    """A machine that draws `pictures_a_second` pictures and makes frames without one for nothing: media a second
    at a picture rate."""
    return lambda every: 10.0 if every < 0 else min(10.0, pictures_a_second * every / 25)


def test_a_machine_that_draws_too_few_pictures_sheds_half_of_them_and_keeps_the_reply_on_time():
    reply = Reply(spoken_s=60.0)
    reply.run(0.4, lambda every: 1.5)  # the first frames come ahead
    reply.run(60.0, cost_per_picture(18))  # 18 pictures a second: 0.72 s of media a second, then 1.44 at half
    assert reply.steps[0] == "half" and reply.late == 0
    halves = [w["at"] for w in reply.warnings if w["pictures"] == "half"]
    alls = [w["at"] for w in reply.warnings if w["pictures"] == "all"]
    held = [back - shed for shed, back in zip(halves, alls)]
    assert all(later > earlier for earlier, later in zip(held, held[1:])), held  # every picture tried ever less often


def test_when_half_is_not_enough_a_quarter_are_drawn_and_they_come_back_once_it_is_ahead():
    reply = Reply(spoken_s=60.0)
    reply.run(0.4, lambda every: 1.5)
    slow = cost_per_picture(10)  # half still falls behind (0.8 s of media a second); a quarter keeps ahead (1.6)
    while reply.steps != ["half", "quarter"]:
        reply.run(TICK, slow)
        assert reply.clock.now < 60.0, reply.steps
    reply.run(TICK, slow)
    late = reply.late  # a machine this slow runs dry for a moment before the second step shows
    reply.run(1.0, slow)
    assert reply.late == late and "none" not in reply.steps  # the lips still move
    reply.run(10.0, lambda every: 3.0)  # the neighbour went away: far ahead again
    assert reply.steps == ["half", "quarter", "half", "all"] and reply.late == late


def test_when_half_only_keeps_pace_with_a_client_that_ran_dry_a_quarter_build_it_a_cushion():
    reply = Reply(spoken_s=60.0)
    reply.run(0.4, lambda every: 1.5)
    just = cost_per_picture(13)  # all: 0.52 s of media a second; half: 1.04, on the edge of running dry again
    while reply.steps != ["half", "quarter"]:
        reply.run(TICK, just)
        assert reply.clock.now < 60.0, reply.steps
    reply.run(1.0, just)  # a quarter: twice real time
    assert reply.playback.buffered_s() > 0.5


def test_when_a_quarter_is_not_enough_none_are_drawn_and_the_voice_goes_on():
    reply = Reply(spoken_s=60.0)
    reply.run(0.4, lambda every: 1.5)
    slower = cost_per_picture(4)  # a quarter still falls behind (0.64 s of media a second)
    while reply.steps != ["half", "quarter", "none"]:
        reply.run(TICK, slower)
        assert reply.clock.now < 60.0, reply.steps
    reply.run(TICK, slower)
    late = reply.late
    reply.run(10.0, slower)  # the voice goes on without a gap; once far ahead, pictures come back step by step
    assert reply.late == late and reply.steps[3] == "quarter"


def test_when_speech_synthesis_is_what_is_slow_no_pictures_are_shed():
    reply = Reply(spoken_s=0.2)
    for _ in range(60):  # speech made at 0.8x real time and animated as it comes: the client runs out
        reply.speak(0.08)
        reply.run(TICK, lambda every: 0.8)
    assert reply.late and reply.steps == [] and reply.video.picture_every == 1


def test_a_paused_reply_sheds_nothing_one_that_ends_shed_says_so_and_each_starts_with_every_picture():
    reply = Reply(spoken_s=30.0)
    reply.run(0.4, lambda every: 1.5)
    reply.playback.pause()
    reply.run(3.0, lambda every: 0.0)  # nothing made while the user may be speaking
    assert reply.steps == []
    reply.playback.resume()
    while not reply.steps:
        reply.run(TICK, cost_per_picture(10))
    reply.shedding.close()  # the reply ended while shedding: the client hears that pictures are back
    assert reply.steps[-1] == "all" and reply.video.picture_every == 1
    reply.video.set_picture_every(-1)
    LoadShedding(reply.video, Playback(reply.clock), reply.warnings.append)
    assert reply.video.picture_every == 1
