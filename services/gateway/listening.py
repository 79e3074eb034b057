"""The user's speech, recognised for as long as the conversation lasts: one logical stream of the recogniser's
events over as many gRPC streams as it takes.

A stage's connections age out (its `max_connection_age`: a GOAWAY, then a grace, then the cut), and a replica
may go away. So the stream is renewed after a final transcript once it is `renew_after_s` old, and a stream cut
with UNAVAILABLE is re-opened at once. Nothing the user said is lost either way: the audio sent since the last
final transcript is kept and sent again first on the new stream (the utterance is recognised whole), and every
time reported stays counted from the start of the conversation's audio.
"""

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable

from prometheus_client import Counter

from services.gateway.protocol import ErrorCode
from services.gateway.stages import ListenConfig, Recognizer, SpeechEvent, StageFailed, Transcript

log = logging.getLogger(__name__)

STREAMS = Counter("avatar_gateway_asr_streams_total", "Speech recognition streams opened, by cause", ["cause"])
_WIDTH = {"linear16": 2, "float32": 4}
_KEEP_S = 30.0  # at most this much audio of one utterance is kept to send again


class Listener:
    def __init__(self, asr: Recognizer, config: ListenConfig, audio: asyncio.Queue, session_id: str,
                 renew_after_s: float, reopen_attempts: int, clock: Callable[[], float] = time.monotonic):
        self._asr = asr
        self._config = config
        self._audio = audio
        self._session_id = session_id
        self._renew_after_s = renew_after_s
        self._reopen_attempts = reopen_attempts
        self._clock = clock
        self._bytes_per_s = config.sample_rate * _WIDTH[config.encoding]
        self._pending = bytearray()  # audio sent since the last final transcript
        self._sent_s = 0.0  # all audio sent, in seconds

    async def messages(self) -> AsyncIterator[SpeechEvent | Transcript]:
        """The recogniser's events and transcripts until the client ends its audio (a stage that stays down
        raises StageFailed)."""
        cause, failures = "start", 0
        while True:
            STREAMS.labels(cause).inc()
            replay = bytes(self._pending)
            start_s = self._sent_s - len(replay) / self._bytes_per_s  # where this stream's audio begins
            opened = self._clock()
            turn_end_s = self._sent_s  # where the utterance being recognised ends, once known
            try:
                async for message in self._asr.listen(self._config, self._frames(replay), self._session_id):
                    failures = 0
                    message = _shifted(message, start_s)
                    yield message
                    if isinstance(message, SpeechEvent) and message.kind == "end_of_turn":
                        turn_end_s = message.t
                    if isinstance(message, Transcript) and message.final:
                        self._forget_until(turn_end_s)
                        if self._clock() - opened >= self._renew_after_s:
                            break  # between utterances: a fresh stream before the connection ages out
                else:
                    return  # the client ended its audio and the recogniser finished
                cause = "renewed"
            except StageFailed as err:
                if err.code != ErrorCode.STAGE_UNAVAILABLE or failures >= self._reopen_attempts:
                    raise
                failures += 1
                log.info("speech recognition stream of %s cut (%s); re-opening with %.1f s of audio sent again",
                         self._session_id, err, len(self._pending) / self._bytes_per_s)
                cause = "reopened"
                await asyncio.sleep(0.1 * failures)

    def _forget_until(self, t: float) -> None:
        """The utterance up to `t` (seconds of the conversation's audio) is recognised: no need to send it again.
        What came after it (maybe the next utterance's start) is kept."""
        pending_from = self._sent_s - len(self._pending) / self._bytes_per_s
        width = _WIDTH[self._config.encoding]
        drop = round((t - pending_from) * self._bytes_per_s / width) * width
        del self._pending[: max(0, drop)]

    async def _frames(self, replay: bytes) -> AsyncIterator[bytes]:
        step = self._bytes_per_s // 10  # the utterance so far, again, in 100 ms chunks
        for start in range(0, len(replay), step):
            yield replay[start : start + step]
        while (frame := await self._audio.get()) is not None:
            self._pending += frame
            del self._pending[: max(0, len(self._pending) - int(_KEEP_S * self._bytes_per_s))]
            self._sent_s += len(frame) / self._bytes_per_s
            yield frame


def _shifted(message: SpeechEvent | Transcript, by_s: float) -> SpeechEvent | Transcript:
    """Times counted from the conversation's audio instead of this stream's."""
    if isinstance(message, SpeechEvent):
        return dataclasses.replace(message, t=message.t + by_s)
    words = tuple(dataclasses.replace(w, start=w.start + by_s, end=w.end + by_s) for w in message.words)
    return dataclasses.replace(message, words=words)
