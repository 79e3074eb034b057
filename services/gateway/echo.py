"""Whether speech heard over a reply is the reply itself, come back through the user's speakers.

A laptop's speakers reach its microphone; the browser's echo canceller takes most of that away, not all, and
what it leaves is enough for the recogniser to hear speech and words. The gateway knows what it sent and what
the user is hearing now (`playback.py`), so it tells the echo from a person in two ways:
- the sound: the microphone's last half second (at the onset of speech, and when words are recognised) is
  compared with the reply's audio heard over the last seconds, at every delay up to `max_delay_s` (the network
  both ways, the device buffers). The reply's own sound, however faint, correlates strongly with it at one delay;
  a person speaking over it hardly;
- the words: a transcript whose meaningful words are mostly among the words of the reply heard just before is
  the reply, recognised (also while the reply is paused: its echo may be recognised after the pause).
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

    def heard(self, frame: bytes) -> None:
        """A frame of the microphone (the session's audio format)."""
        self._frames.append(frame)
        self._bytes += len(frame)
        while self._frames and self._bytes - len(self._frames[0]) >= self._keep:
            self._bytes -= len(self._frames.popleft())

    def sounds_like(self, playback: Playback) -> bool:
        """The microphone's last half second is the reply's own sound."""
        if not self._frames:
            return False
        mic = resample(decode(b"".join(self._frames), self._encoding), self._rate, OUTPUT_RATE)[-int(_MIC_S * OUTPUT_RATE):]
        window = int((_MIC_S + self._max_delay_s) * OUTPUT_RATE)
        reference = playback.audio_heard(_MIC_S + self._max_delay_s)
        if reference.size < _SHORTEST_S * OUTPUT_RATE:
            return False  # the reply has only begun to play: what the microphone has is not its echo
        reference = np.pad(reference, (window - reference.size, 0))  # before the reply began: silence
        found = correlation(mic - mic.mean(), reference)
        log.debug("microphone against the reply heard up to %.1f s: correlation %.2f", playback.heard_s(), found)
        return found >= _ECHO_CORRELATION

    @staticmethod
    def says_like(text: str, playback: Playback, seconds: float = 6.0) -> bool:
        """Two thirds or more of the meaningful words of `text` were among the reply's words heard over the last
        `seconds` (the recogniser mishears some of a faint echo)."""
        words = meaningful_words(text)
        spoken = set(meaningful_words(" ".join(playback.recent_words(seconds))))
        return bool(words) and sum(word in spoken for word in words) >= 2 / 3 * len(words)
