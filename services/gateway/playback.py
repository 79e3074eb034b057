"""What the user has heard of a reply, from the media clock.

The gateway sends a reply's media as fast as the stages make it; the client plays it in real time from the
first message on. So at any moment the user has heard `now - first media sent` seconds of it, at most as much as
was sent. The reply's clauses, with the audio position where each starts, turn that into words: a reply cut by
barge-in is remembered as what was heard of it.
"""

import time
from collections.abc import Callable


class Playback:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._started_at: float | None = None
        self._sent_s = 0.0  # media end, in seconds of the reply's audio
        self._clauses: list[tuple[float, str]] = []  # (start in seconds of the reply's audio, text)
        self._spoken_s = 0.0  # audio made by speech synthesis so far

    def spoken(self, seconds: float, clause: str = "") -> None:
        """Speech synthesis made `seconds` more of the reply's audio, starting `clause` when given."""
        if clause:
            self._clauses.append((self._spoken_s, clause))
        self._spoken_s += seconds

    def sent(self, end_s: float) -> None:
        """Media up to `end_s` of the reply's audio went to the client."""
        if self._started_at is None:
            self._started_at = self._clock()
        self._sent_s = max(self._sent_s, end_s)

    def heard_s(self) -> float:
        if self._started_at is None:
            return 0.0
        return min(self._clock() - self._started_at, self._sent_s)

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
