"""The clock a WebRTC peer's tracks play replies on (services/gateway/webrtc.py): replies one after another,
paused and resumed, dropped at once when interrupted."""

import asyncio

import pytest

from services.gateway.webrtc import PacedTrack, ReplyClock

pytestmark = pytest.mark.unit


class Clock(ReplyClock):
    def __init__(self):
        super().__init__()
        self.t = 0.0

    def now(self) -> float:
        return self.t


def test_a_reply_starts_when_its_first_media_comes_and_the_next_not_before_it_ends():
    clock = Clock()
    clock.t = 5.0
    assert clock.place(0, 0.0, 0.04) == 5.0 and clock.place(0, 2.96, 0.04) == 7.96
    clock.t = 6.0
    assert clock.place(1, 0.0, 0.04) == 8.0  # queued behind the first reply's last piece
    assert clock.place(0, 3.0, 0.04) is None  # an older reply's
    assert clock.rtp(8.0, 48000) == 384000


def test_a_pause_holds_the_reply_and_a_resume_moves_what_is_left_later_by_the_pause():
    clock = Clock()
    at = clock.place(3, 1.0, 0.04)
    clock.t = 0.5
    clock.pause(3)
    assert clock.due(at) == float("inf")
    clock.t = 2.0
    clock.resume(3)
    assert clock.due(at) == pytest.approx(0.5)  # placed at 1.0, paused 1.5 s, now 2.0
    assert clock.rtp(at, 1000) == 2500  # the receiver's clock ran on through the pause


async def test_an_interrupted_reply_is_dropped_from_the_tracks_at_once():
    clock = ReplyClock()
    track = PacedTrack("video", clock, 90000)
    for i in range(50):
        track.put(0, clock.place(0, i * 0.04, 0.04), b"frame")
    assert bytes(await asyncio.wait_for(track.recv(), 1.0)) == b"frame"  # the reply plays
    clock.drop(0)
    assert clock.place(0, 1.0, 0.04) is None  # what comes late of it goes nowhere
    at = clock.place(1, 0.0, 0.04)
    assert abs(at - clock.now()) < 0.05  # the next reply starts now, not after what the story would have played
    track.put(1, at, b"next")
    packet = await asyncio.wait_for(track.recv(), 1.0)
    assert bytes(packet) == b"next"  # nothing of the interrupted reply went out after it


def test_after_an_interruption_the_next_reply_starts_at_once():
    clock = Clock()
    for i in range(100):  # four seconds of a story, queued at once
        clock.place(2, i * 0.04, 0.04)
    clock.t = 1.0
    clock.drop(2)
    assert clock.place(3, 0.0, 0.04) == 1.0  # not at 4.0, after the story that was cut


async def test_what_a_lost_connection_had_not_played_goes_on_from_its_last_keyframe():
    from services.gateway import media_messages
    from services.gateway.protocol import AudioSpec
    from services.gateway.webrtc import WebRtcPeer

    peer = WebRtcPeer([], "h264", AudioSpec(), lambda _: None, lambda: None, lambda _: None, 0.0)
    clock = peer._clock = Clock()
    for i in range(100):  # four seconds of a reply, a keyframe every two
        peer.media(media_messages.video_message(0, i * 0.04, b"a%d" % i, b"f%d" % i, "h264", i % 50 == 0))
    clock.t = 2.5
    tail = [media_messages.parse(m) for m in peer.unplayed()]
    assert [m["image"] for m in tail[:14]] == [b"f%d" % i for i in range(50, 64)]
    assert tail[0]["keyframe"] and all(m["pts"] == pytest.approx(2.52) and not m["audio"] for m in tail[:13])
    assert [m["audio"] for m in tail[13:]] == [b"a%d" % i for i in range(63, 100)]  # the rest as it came
    clock.drop(0)
    assert peer.unplayed() == []  # an interrupted reply's rest is not played anywhere
    await peer.close()


async def test_a_connection_lost_after_playing_all_it_held_of_a_reply_still_being_made_hands_on_its_frames():
    from services.gateway import media_messages
    from services.gateway.protocol import AudioSpec
    from services.gateway.webrtc import WebRtcPeer

    peer = WebRtcPeer([], "h264", AudioSpec(), lambda _: None, lambda: None, lambda _: None, 0.0)
    clock = peer._clock = Clock()
    for i in range(60):  # the stages fell behind: 2.4 s of the reply came, and the tracks played them
        peer.media(media_messages.video_message(0, i * 0.04, b"a%d" % i, b"f%d" % i, "h264", i % 50 == 0))
    clock.t = 3.0
    tail = [media_messages.parse(m) for m in peer.unplayed()]  # what comes next over the WebSocket builds on them
    assert [m["image"] for m in tail] == [b"f%d" % i for i in range(50, 60)]
    assert tail[0]["keyframe"] and all(m["pts"] == pytest.approx(2.36) and not m["audio"] for m in tail)
    peer.follow({"type": "turn_end", "turn": 0})
    assert peer.unplayed() == []  # a reply played to its end leaves nothing to go on from
    await peer.close()
