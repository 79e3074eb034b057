"""What the user has heard of a reply, from the media clock.

The gateway sends a reply's media as fast as the stages make it; the client plays it in real time from a jitter
buffer (`CLIENT_JITTER_S`) after the first message on, except while it is paused (speech began over it, and the
conversation waits to hear whether it is words), and when it runs out (the stages fell behind real time) it goes on
from where it stopped a jitter buffer after more comes, as the browser app's player does. So the user has heard the
time played since the last such start (the first media, a resume, media after running out) on top of where it
started, at most as much as was sent. Media that comes after the client ran out is late (the user heard the voice
stop: `on_late`); media that comes with less than `thin_s` left to play came close to it (`on_thin`, once a run):
what admission learns the machine holds from. The reply's clauses, with the audio position where each starts, turn
that into words: a reply cut by barge-in is remembered as what was heard of it. The last seconds of the reply's
audio are kept, so what comes back through the user's microphone can be compared with what was playing (`echo.py`).
"""

import time
from collections.abc import Callable

import numpy as np

from services.common.priority_turns import CLIENT_JITTER_S
from services.gateway.stages import OUTPUT_RATE

_KEEP_S = 6.0  # of the reply's audio heard, for the echo check
_MOST_S = 120.0  # of the reply's audio kept in all: what was heard lately and what was sent ahead of it
_LETTERS_PER_S = 14.0  # a voice's pace, spaces not counted, until the reply's own is known
_PACE_AFTER_S = 1.0  # of audio made: the reply's own pace


def letters(text: str) -> int:
    """Letters of a text, spaces not counted: what takes time to say."""
    return len(text) - sum(c.isspace() for c in text)


class Playback:
    def __init__(self, clock: Callable[[], float] = time.monotonic, on_late: Callable[[], None] = lambda: None,
                 late_s: float = 0.0, on_thin: Callable[[], None] = lambda: None, thin_s: float = 0.04,
                 jitter_s: float = CLIENT_JITTER_S):
        self._clock = clock
        self._on_late = on_late  # told when the media ran out more than `late_s` before more came
        self._late_s = late_s
        self._on_thin = on_thin  # told when media came with less than `thin_s` left to play (once a run)
        self._thin_s = thin_s
        self._thin_told = False
        self._jitter_s = jitter_s
        # Each time playing (re)started: when, and from where in the reply's audio. A run plays on until the next
        # one's start position (where the client ran out or paused), the last one up to what was sent; it starts
        # a jitter buffer after the media that began it came.
        self._runs: list[tuple[float, float]] = []
        self._sent_s = 0.0  # media end, in seconds of the reply's audio
        self._clauses: list[tuple[float, str]] = []  # (start in seconds of the reply's audio, text)
        self._letters_begun = 0  # in the clauses speech synthesis began
        self._spoken_s = 0.0  # audio made by speech synthesis so far
        self._paused_at: float | None = None
        self._audio = np.zeros(0, np.int16)  # the reply's audio sent, from _KEEP_S before what is heard now
        self._audio_end_s = 0.0  # where it ends, in seconds of the reply's audio

    def spoken(self, seconds: float, clause: str = "") -> None:
        """Speech synthesis made `seconds` more of the reply's audio, starting `clause` when given."""
        if clause:
            self._clauses.append((self._spoken_s, clause))
            self._letters_begun += letters(clause)
        self._spoken_s += seconds

    def lead_s(self, letters_given: int) -> float:
        """How far the reply's speech runs ahead of what the user has heard once the `letters_given` letters given
        to speech synthesis are spoken: the audio made, and the letters of clauses not begun yet at the reply's
        own pace so far."""
        pace = self._letters_begun / self._spoken_s if self._spoken_s >= _PACE_AFTER_S else _LETTERS_PER_S
        return self.ahead_s() + max(0, letters_given - self._letters_begun) / pace

    def sent(self, end_s: float, pcm: bytes = b"") -> None:
        """Media up to `end_s` of the reply's audio went to the client; `pcm`: the audio that ends there."""
        if not self._runs or (self._paused_at is None and self.heard_s() >= self._sent_s):
            if self._runs and -self.left_s() > self._late_s:  # it ran out: the user heard silence since
                self._on_late()
            self._start(self._sent_s, self._jitter_s)  # first media, or after running out
        elif self._paused_at is None and self.left_s() < self._thin_s and not self._thin_told:
            self._thin_told = True
            self._on_thin()
        self._sent_s = max(self._sent_s, end_s)
        if pcm:
            # Media goes out as fast as the stages make it, seconds ahead of what plays: the audio kept reaches
            # back _KEEP_S from what is heard now, however far ahead of it the media is.
            audio = np.concatenate([self._audio, np.frombuffer(pcm, np.int16)])
            self._audio_end_s = end_s
            keep_s = min(max(end_s - self.heard_s() + _KEEP_S, _KEEP_S), _MOST_S)
            self._audio = audio[-int(keep_s * OUTPUT_RATE):]

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self._clock()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._start(self.heard_s())
            self._paused_at = None

    def _start(self, position_s: float, delay_s: float = 0.0) -> None:
        now = self._clock()
        self._runs.append((now + delay_s, position_s))
        self._thin_told = False
        while len(self._runs) > 1 and self._runs[1][0] < now - _KEEP_S:
            del self._runs[0]

    def left_s(self) -> float:
        """How long the client plays on (a run's jitter wait included) if no more media comes; negative: it ran out
        that long ago."""
        at, position = self._runs[-1]
        now = self._clock() if self._paused_at is None else self._paused_at
        return at + self._sent_s - position - now

    def ahead_s(self) -> float:
        """How far the audio made (by speech synthesis) runs ahead of what the user has heard."""
        return self._spoken_s - self.heard_s()

    def now(self) -> float:
        """The clock playback is reckoned on."""
        return self._clock()

    @property
    def spoken_s(self) -> float:
        """Seconds of the reply's audio made by speech synthesis so far."""
        return self._spoken_s

    @property
    def sent_s(self) -> float:
        """Where the media sent so far ends, in seconds of the reply's audio."""
        return self._sent_s

    def buffered_s(self) -> float:
        """Media sent and not played yet: how long the client could play on if no more came."""
        return self._sent_s - self.heard_s()

    def unsent_s(self) -> float:
        """Audio speech synthesis made that has not gone out yet (animation has it in hand)."""
        return self._spoken_s - self._sent_s

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def heard_s(self) -> float:
        if not self._runs:
            return 0.0
        at, position = self._runs[-1]
        now = self._clock() if self._paused_at is None else self._paused_at
        return max(0.0, min(position + max(0.0, now - at), self._sent_s))

    def audio_heard(self, seconds: float) -> np.ndarray:
        """What the user's speakers gave out over the last `seconds` (float32 at OUTPUT_RATE): the reply's audio
        where it played, silence before it began, while it was paused and where it had run out."""
        now = self._clock()
        out = np.zeros(round(seconds * OUTPUT_RATE), np.float32)
        for k, (at, position) in enumerate(self._runs):
            last = k + 1 == len(self._runs)
            stop = self.heard_s() if last else self._runs[k + 1][1]  # where it ran out, paused, or is now
            begin_t = max(at, now - seconds)
            end_t = min(at + stop - position, now)
            if end_t <= begin_t:
                continue
            into = round((begin_t - now + seconds) * OUTPUT_RATE)
            source = len(self._audio) - round((self._audio_end_s - (position + begin_t - at)) * OUTPUT_RATE)
            count = min(round((end_t - begin_t) * OUTPUT_RATE), out.size - into)
            low, high = max(source, 0), min(source + count, len(self._audio))  # what of it is kept
            if high > low:
                out[into + low - source : into + high - source] = self._audio[low:high].astype(np.float32) / 32768
        return out

    def recent_words(self, seconds: float) -> list[str]:
        """The words of the clauses the user heard over the last `seconds`."""
        heard = self.heard_s()
        words: list[str] = []
        for i, (start, text) in enumerate(self._clauses):
            end = self._clauses[i + 1][0] if i + 1 < len(self._clauses) else self._spoken_s
            if start < heard and end > heard - seconds:
                words += text.split()
        return words

    def playing(self) -> bool:
        """The client is still playing (or about to play) this reply."""
        return not self._runs or self.heard_s() < self._sent_s

    def heard_text(self) -> str:
        """The words heard so far: whole clauses, and the share of the clause being spoken that has elapsed."""
        heard = self.heard_s()
        words: list[str] = []
        for i, (start, text) in enumerate(self._clauses):
            if start >= heard:
                break
            end = self._clauses[i + 1][0] if i + 1 < len(self._clauses) else self._spoken_s
            clause_words = text.split()
            share = 1.0 if end <= heard else (heard - start) / max(end - start, 1e-6)
            words += clause_words[: round(share * len(clause_words))]
        return " ".join(words)
