"""What the user has heard of a reply, from the media clock.

The gateway sends a reply's media as fast as the stages make it; the client plays it in real time from the
first message on, except while it is paused (speech began over it, and the conversation waits to hear whether
it is words). So at any moment the user has heard the time since the first media was sent, less the pauses, at
most as much as was sent. The reply's clauses, with the audio position where each starts, turn that into
words: a reply cut by barge-in is remembered as what was heard of it. The last seconds of the reply's audio are
kept, so what comes back through the user's microphone can be compared with what was playing (`echo.py`).
"""

import time
from collections.abc import Callable

import numpy as np

from services.gateway.stages import OUTPUT_RATE

_KEEP_S = 6.0  # of the reply's audio, for the echo check


class Playback:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._started_at: float | None = None
        self._sent_s = 0.0  # media end, in seconds of the reply's audio
        self._clauses: list[tuple[float, str]] = []  # (start in seconds of the reply's audio, text)
        self._spoken_s = 0.0  # audio made by speech synthesis so far
        self._paused_at: float | None = None
        self._paused_s = 0.0  # time spent paused, before the pause under way
        self._audio = np.zeros(0, np.int16)  # the last _KEEP_S of the reply's audio sent
        self._audio_end_s = 0.0  # where it ends, in seconds of the reply's audio

    def spoken(self, seconds: float, clause: str = "") -> None:
        """Speech synthesis made `seconds` more of the reply's audio, starting `clause` when given."""
        if clause:
            self._clauses.append((self._spoken_s, clause))
        self._spoken_s += seconds

    def sent(self, end_s: float, pcm: bytes = b"") -> None:
        """Media up to `end_s` of the reply's audio went to the client; `pcm`: the audio that ends there."""
        if self._started_at is None:
            self._started_at = self._clock()
        self._sent_s = max(self._sent_s, end_s)
        if pcm:
            audio = np.concatenate([self._audio, np.frombuffer(pcm, np.int16)])
            self._audio = audio[-int(_KEEP_S * OUTPUT_RATE):]
            self._audio_end_s = end_s

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self._clock()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._paused_s += self._clock() - self._paused_at
            self._paused_at = None

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def heard_s(self) -> float:
        if self._started_at is None:
            return 0.0
        now = self._clock() if self._paused_at is None else self._paused_at
        return max(0.0, min(now - self._started_at - self._paused_s, self._sent_s))

    def audio_heard(self, seconds: float) -> np.ndarray:
        """The reply's audio the user heard over the last `seconds` (float32 at OUTPUT_RATE; less near its start)."""
        end = len(self._audio) - round((self._audio_end_s - self.heard_s()) * OUTPUT_RATE)
        end = max(0, min(end, len(self._audio)))
        return self._audio[max(0, end - round(seconds * OUTPUT_RATE)) : end].astype(np.float32) / 32768

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
        return self._started_at is None or self.heard_s() < self._sent_s

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
