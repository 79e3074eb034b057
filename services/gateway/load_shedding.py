"""Fewer pictures before a late reply: when animation makes a reply's media slower than real time while its
listener plays it, the frames go on carrying their audio on time but only some of them a picture.

Drawing and encoding a picture is most of what a frame costs the animation stage, so a stream that fell behind real
time (a slower machine, a neighbour taking a core, more conversations than usual speaking at once) catches up: first
every other frame gets a picture (12.5 a second), then, if that is not enough, every fourth (6.25 a second: the
lips still open and close with the voice), and only then none (the face holds still and the voice goes on). When
the media is comfortably ahead again for a while, pictures come back a step at a time (and if that was too soon,
the next time waits twice as long). The client hears of each step in a `warning` (code `video_rate`, `pictures`:
"half", "quarter", "none", and back up to "all", at the latest when the reply ends: the next one starts with every
picture), rather than of a reply that plays late.

Animation counts as behind when speech synthesis has audio it has not animated yet and little is left buffered at
the client, and the media did not go out at least 10% faster than real time over the last half second or so (and
since the last step): a stream that only keeps pace leaves a client that ran dry on the edge of running dry again,
so it sheds a further step to build a cushion. When speech synthesis itself is slow (or the text engine), fewer
pictures would not help, and none are shed.
"""

from collections import deque

from prometheus_client import Counter, Gauge

from services.gateway.playback import Playback
from services.gateway.stages import VideoOut

STEPS = (1, 2, 4, -1)  # PictureRate.every: every frame, every other, every fourth, none
NAMES = {1: "all", 2: "half", 4: "quarter", -1: "none"}
SHED = Counter("avatar_gateway_pictures_shed_total", "Times a reply was given fewer pictures to keep it on time")
SHEDDING = Gauge("avatar_gateway_replies_shedding", "Replies being made with fewer pictures now")

_RATE_WINDOW_S = 0.6  # the media's pace is judged over about this long
_MIN_WINDOW_S = 0.45  # and not on less (since the last step, too): a reply's first moments, when every stage works
# at once, are not judged on their own
_SETTLE_S = 1.0  # a further step waits this long after the last: frames already made at the last rate come first
_REFILL = 1.1  # seconds of media a second that refill a thin buffer: only keeping pace is behind
_IN_HAND_S = 0.3  # speech made and not sent beyond animation's look-ahead: animation is what the reply waits for


class LoadShedding:
    def __init__(self, video: VideoOut, playback: Playback, warn, thin_s: float = 0.5, ahead_s: float = 1.0,
                 hold_s: float = 1.5):
        """`thin_s`: buffered at the client below this, a slower-than-real-time stream sheds a step; `ahead_s`,
        `hold_s`: buffered above this for that long brings a step back (twice as long each time one given back
        had to be shed again). `warn(event)` tells the client."""
        self._video = video
        self._playback = playback
        self._warn = warn
        self._thin_s, self._ahead_s, self._hold_s = thin_s, ahead_s, hold_s
        self._step = 0
        self._restored = False  # a step was given back in this reply
        self._stepped_at: float | None = None  # when the last step was taken
        self._ahead_since: float | None = None  # since when the media has been comfortably ahead
        self._sent: deque[tuple[float, float]] = deque()  # (when, media sent up to) over the last window
        video.set_picture_every(STEPS[0])  # each reply starts with every picture

    @property
    def pictures(self) -> str:
        return NAMES[STEPS[self._step]]

    def check(self) -> None:
        """Called a few times a second while the reply is made."""
        playback, now = self._playback, self._playback.now()
        if playback.paused or playback.heard_s() <= 0:  # not playing
            self._sent.clear()
            self._ahead_since = None
            return
        sent = playback.sent_s
        self._sent.append((now, sent))
        while now - self._sent[0][0] > _RATE_WINDOW_S:
            self._sent.popleft()
        since, then = self._sent[0]
        slow = now - since >= _MIN_WINDOW_S and sent - then < (now - since) * _REFILL
        behind = slow and playback.unsent_s() > _IN_HAND_S and playback.buffered_s() < self._thin_s
        settled = self._stepped_at is None or now - self._stepped_at >= _SETTLE_S  # the last step has shown
        if behind and self._step + 1 < len(STEPS) and settled:
            SHED.inc()
            if self._restored:  # the pictures given back were too many again: wait longer before the next try
                self._hold_s *= 2
            self._move(+1, now, "the machine is behind: fewer pictures until it catches up")
        elif playback.buffered_s() > self._ahead_s and self._step:
            self._ahead_since = self._ahead_since if self._ahead_since is not None else now
            if now - self._ahead_since >= self._hold_s:
                self._restored = True
                self._move(-1, now, "caught up: more pictures again")
        else:
            self._ahead_since = None

    def close(self) -> None:
        """The reply is over (the next starts with every picture)."""
        if self._step:
            self._move(-self._step, self._playback.now(), "the reply is over: the next starts with every picture")

    def _move(self, by: int, now: float, message: str) -> None:
        if not self._step:
            SHEDDING.inc()
        elif self._step + by == 0:
            SHEDDING.dec()
        self._step += by
        self._stepped_at = now
        self._sent.clear()  # the pace is judged afresh at the new step
        self._ahead_since = None
        self._video.set_picture_every(STEPS[self._step])
        self._warn({"type": "warning", "code": "video_rate", "pictures": self.pictures, "message": message})
