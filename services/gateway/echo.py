"""Whether speech heard over a reply is the reply itself, come back through the user's speakers.

A laptop's speakers reach its microphone; the browser's echo canceller takes most of that away, not all, and
what it leaves is enough for the recogniser to hear speech and words. The gateway knows what it sent and what
the user is hearing now (`playback.py`), so it tells the echo from a person in two ways:
- the sound: the microphone's last half second (at the onset of speech, and when words are recognised) is
  compared with the reply's audio heard over the last seconds, at every delay up to `max_delay_s` (the network
  both ways, the device buffers). The reply's own sound, however faint, correlates strongly with it at one delay;
  a person speaking over it hardly;
- a person over the echo: every quarter second while a reply plays, the microphone's last half second is split
  into what the reply's sound explains (the correlation squared) and the rest. The rest louder than what the reply
  explains, and well above the room's own noise (tracked as its quietest over the last seconds), is someone else
  (a double-talk detector, as echo cancellers have). The recogniser hears echo and person as one utterance, so
  its words then are the person's, whatever else they hold;
- the words: a transcript whose last meaningful words are mostly among the words of the reply heard just before
  is the reply, recognised (also while the reply is paused: its echo may be recognised after the pause). Only the
  last words: an echo heard as one long utterance is transcribed from its beginning, long out of the window.
"""

import logging
from collections import deque

import numpy as np

from core.audio import FLOAT32, LINEAR16, decode, resample
from services.gateway.playback import Playback
from services.gateway.spoken_words import meaningful_words
from services.gateway.stages import OUTPUT_RATE

log = logging.getLogger(__name__)
_MIC_S = 0.5  # of the microphone, compared at a speech onset
_SHORTEST_S = 0.1  # of the reply heard, before anything can be its echo
_ECHO_CORRELATION = 0.5  # normalised correlation at or above which the microphone holds the reply's sound
_LAST_WORDS = 8  # of a transcript, compared with the reply's words
_CHECK_S = 0.25  # the double-talk check runs every this much microphone
_FLOOR_S = 5.0  # the room's noise: the quietest unexplained sound over this long
_ABOVE_FLOOR = 10.0  # someone else speaks 10 dB above the room's noise
_ABOVE_ECHO = 6.0  # and 8 dB above what the reply's sound explains (an echo the delay search misaligns: 1-4x)
_QUIETEST = 1e-6  # mean square (-60 dBFS): quieter than this is no one speaking
_ENCODINGS = {"linear16": LINEAR16, "float32": FLOAT32}


def correlation(mic: np.ndarray, reference: np.ndarray) -> float:
    """The largest normalised cross-correlation of `mic` with any stretch of `reference` as long as it."""
    n = mic.size
    if n == 0 or reference.size < n:
        return 0.0
    size = 1 << int(np.ceil(np.log2(reference.size + n)))
    dots = np.fft.irfft(np.fft.rfft(reference, size) * np.conj(np.fft.rfft(mic, size)), size)[: reference.size - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(reference.astype(np.float64) ** 2)])
    windows = energy[n:] - energy[:-n]
    norms = np.sqrt(np.maximum(windows, 1e-12) * float(np.dot(mic, mic)))
    return float(np.max(np.abs(dots) / np.maximum(norms, 1e-9))) if np.dot(mic, mic) > 1e-9 else 0.0


class EchoGuard:
    """The microphone's last moments, and the two echo checks against the reply being heard."""

    def __init__(self, encoding: str, sample_rate: int, max_delay_s: float = 1.0):
        self._encoding = _ENCODINGS[encoding]
        self._rate = sample_rate
        self._max_delay_s = max_delay_s
        width = 2 if encoding == "linear16" else 4
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._keep = int(_MIC_S * sample_rate) * width
        self.heard_s = 0.0  # microphone heard so far: the clock of the checks, and of the recogniser's words
        self._width = width
        self._checked_s = 0.0
        self._unexplained: deque[float] = deque(maxlen=int(_FLOOR_S / _CHECK_S))
        # When checks found someone else speaking (each check covers the half second before it), for a minute.
        self._someone: deque[float] = deque(maxlen=int(60 / _CHECK_S))

    def heard(self, frame: bytes, playback: Playback | None) -> bool:
        """A frame of the microphone (the session's audio format); `playback`: the reply the user hears, if any.
        True when someone other than the reply began to speak into the microphone."""
        self._frames.append(frame)
        self._bytes += len(frame)
        while self._frames and self._bytes - len(self._frames[0]) >= self._keep:
            self._bytes -= len(self._frames.popleft())
        self.heard_s += len(frame) / self._width / self._rate
        if self.heard_s - self._checked_s < _CHECK_S:
            return False
        speaking = bool(self._someone) and self._someone[-1] == self._checked_s  # at the last check
        self._checked_s = self.heard_s
        return self._check_double_talk(playback) and not speaking

    def someone_else_during(self, start_s: float, end_s: float) -> bool:
        """Someone other than the reply spoke into the microphone between `start_s` and `end_s` (seconds of it)."""
        return any(at - _MIC_S <= end_s and at >= start_s for at in self._someone)

    def sounds_like(self, playback: Playback) -> bool:
        """The microphone's last half second is the reply's own sound."""
        return self._correlation(self._microphone(), playback) >= _ECHO_CORRELATION

    def _microphone(self) -> np.ndarray:
        """The last half second, at the reply's rate."""
        mic = resample(decode(b"".join(self._frames), self._encoding), self._rate, OUTPUT_RATE)[-int(_MIC_S * OUTPUT_RATE):]
        return mic - mic.mean() if mic.size else mic

    def _correlation(self, mic: np.ndarray, playback: Playback) -> float:
        if mic.size == 0 or playback.heard_s() < _SHORTEST_S:
            return 0.0  # the reply has only begun to play: what the microphone has is not its echo
        found = correlation(mic, playback.audio_heard(_MIC_S + self._max_delay_s))
        log.debug("microphone against the reply heard up to %.1f s: correlation %.2f", playback.heard_s(), found)
        return found

    def _check_double_talk(self, playback: Playback | None) -> bool:
        """Someone other than the reply speaks into the microphone now. Only while the user hears a reply: without
        its sound to compare with, the microphone's sound cannot be told from the reply's echo."""
        if playback is None or playback.heard_s() < _SHORTEST_S:
            return False
        # Each half on its own: where the client ran out and went on, the two sides of the gap come back at two
        # slightly different delays.
        explained = unexplained = 0.0
        for half in np.array_split(self._microphone(), 2):
            power = float(np.mean(half.astype(np.float64) ** 2)) if half.size else 0.0
            share = self._correlation(half, playback) ** 2 if power > _QUIETEST else 0.0
            explained, unexplained = explained + share * power / 2, unexplained + (1 - share) * power / 2
        floor = min(self._unexplained, default=None)  # the room's noise: unknown before the first check
        self._unexplained.append(unexplained)
        someone = floor is not None and unexplained > max(_ABOVE_FLOOR * floor, _QUIETEST, _ABOVE_ECHO * explained)
        if someone:
            log.debug("someone else at %.2f s of microphone: %.1e unexplained (room %.1e), %.1e explained",
                      self.heard_s, unexplained, floor, explained)
            self._someone.append(self.heard_s)
        return someone

    @staticmethod
    def says_like(text: str, playback: Playback, seconds: float = 15.0) -> bool:
        """Two thirds or more of the last meaningful words of `text` were among the reply's words heard over the
        last `seconds` (the recogniser mishears some of a faint echo; the echo of a long reply is one utterance
        to it, and its words come seconds after they played on a busy machine)."""
        words = meaningful_words(text)[-_LAST_WORDS:]
        spoken = set(meaningful_words(" ".join(playback.recent_words(seconds))))
        return bool(words) and sum(word in spoken for word in words) >= 2 / 3 * len(words)
