"""One reply, as a short chain of concurrent stages joined by bounded queues:

    text engine ──text deltas──▶ speech synthesis ──PCM chunks──▶ animation ──frames──▶ client

The first clause is heard and seen while the text engine is still writing the rest. If animation fails, the
reply goes on as audio only (with a warning); if the text engine or speech synthesis fails, the turn ends with a
typed error. Errors travel as events, never as exceptions out of this task; cancelling it (barge-in) cancels
every stage's stream.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from opentelemetry import trace

from services.common.tracing import outgoing_metadata, start_child_span, start_turn_span
from services.gateway import media
from services.gateway.playback import Playback
from services.gateway.protocol import ErrorCode, error_event
from services.gateway.speculation import Speculation
from services.gateway.stages import BYTES_PER_S, ReplyRequest, StageFailed, Stages

_QUEUE = 256


async def _drain(queue: asyncio.Queue) -> AsyncIterator:
    while (item := await queue.get()) is not None:
        yield item


class ReplyPipeline:
    def __init__(self, stages: Stages, request: ReplyRequest, voice: str, emit: Callable[[dict | bytes], None],
                 ended_at: float, speculation: Speculation | None = None, playback: Playback | None = None,
                 stall_s: float = 15.0, client_media: media.ClientMedia | None = None):
        """`voice`: the TTS voice ("" = the service's default). `ended_at`: time.perf_counter() at the end of
        the user's turn. `speculation`: a reply already under way, kept; otherwise the text engine is asked.
        `client_media`: the codecs the client chose (JPEG and PCM unless it chose others)."""
        self._stages = stages
        self._request = request
        self._turn = request.meta.turn
        self._voice = voice
        self._media = client_media or media.ClientMedia()
        self._out = self._media.for_reply(self._turn)
        self._emit = emit
        self._speculation = speculation
        self.playback = playback or Playback()
        self.text = ""
        self._marks: dict[str, int] = {}
        self._stall_s = stall_s  # no text, audio or frame for this long: the reply has stalled
        self._progress = (time.monotonic(), "start")  # when the reply last moved, and which stage moved it
        # The turn's span (opened by the speculation when one is kept, else at the end of the user's turn); its
        # events are the latency marks below.
        self._ended_ns = time.time_ns() - int((time.perf_counter() - ended_at) * 1e9)
        self._span = speculation.span if speculation else start_turn_span(request.meta, False, self._ended_ns)
        self._span.set_attribute("avatar.avatar_id", request.avatar_id)
        self._span.add_event("end_of_turn", timestamp=self._ended_ns)

    def _mark(self, name: str, stage: str) -> None:
        """`stage` moved the reply on; the first time of `name` is a latency mark (an event on the turn's span)."""
        self._progress = (time.monotonic(), stage)
        if name not in self._marks:
            self._marks[name] = time.time_ns()
            self._span.add_event(name, timestamp=self._marks[name])

    @property
    def marks(self) -> dict[str, float]:
        """Milliseconds from the end of the user's turn to each first: the latency report the client gets."""
        return {name: max(0.0, round((ns - self._ended_ns) / 1e6, 1)) for name, ns in self._marks.items()}

    @contextlib.contextmanager
    def _stage(self, name: str):
        """A child span of the turn for one stage call; its context travels with the call."""
        span = start_child_span(self._span, name)
        try:
            yield outgoing_metadata(span)
        except StageFailed as err:
            span.set_status(trace.StatusCode.ERROR, str(err))
            raise
        finally:
            span.end()

    async def run(self) -> None:
        text_q: asyncio.Queue[str | None] = asyncio.Queue(maxsize=_QUEUE)
        audio_q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_QUEUE)
        stages = [asyncio.create_task(self._write(text_q)), asyncio.create_task(self._speak(text_q, audio_q)),
                  asyncio.create_task(self._animate(audio_q))]
        work, watchdog = asyncio.gather(*stages), asyncio.create_task(self._watch())
        try:
            await asyncio.wait([work, watchdog], return_when=asyncio.FIRST_COMPLETED)
            (watchdog if watchdog.done() else work).result()
        except StageFailed as err:
            self._span.set_status(trace.StatusCode.ERROR, str(err))
            self._emit(error_event(err.code, str(err)))
        except asyncio.CancelledError:
            self._span.add_event("cancelled")  # barge-in
            raise
        finally:
            for task in (*stages, watchdog):
                task.cancel()
            if self._speculation is not None:
                self._speculation.stop()
            await asyncio.gather(work, watchdog, return_exceptions=True)
            self._span.end()
        self._emit({"type": "turn_end", "turn": self._turn, "reply": self.text, "latency_ms": self.marks,
                    "speculated": self._speculation is not None})

    async def _watch(self) -> None:
        """Ends the reply with stage_unavailable when no stage has moved it on for `stall_s` (a stage that hangs,
        a connection that went silent): a turn never stays open."""
        while True:
            await asyncio.sleep(self._stall_s / 5)
            at, stage = self._progress
            if time.monotonic() - at > self._stall_s:
                raise StageFailed("reply", f"no text, audio or frame for {self._stall_s:.0f} s (last from {stage})",
                                  ErrorCode.STAGE_UNAVAILABLE)

    async def _deltas(self) -> AsyncIterator[str]:
        if self._speculation is not None:  # its own `llm` span covers the call
            async for delta in self._speculation.deltas():
                yield delta
            return
        with self._stage("llm") as metadata:
            async for delta in self._stages.llm.generate(self._request, metadata):
                yield delta

    async def _write(self, text_q: asyncio.Queue) -> None:
        try:
            async for delta in self._deltas():
                self._mark("llm_first_token", "llm")
                self.text += delta
                self._emit({"type": "reply_delta", "turn": self._turn, "text": delta})
                await text_q.put(delta)
        finally:
            text_q.put_nowait(None)

    async def _speak(self, text_q: asyncio.Queue, audio_q: asyncio.Queue) -> None:
        try:
            with self._stage("tts") as metadata:
                async for chunk in self._stages.tts.synthesize(_drain(text_q), self._voice, self._request.meta,
                                                               metadata):
                    self._mark("tts_first_audio", "tts")
                    self.playback.spoken(len(chunk.pcm) / BYTES_PER_S, chunk.text)
                    await audio_q.put(chunk.pcm)
        finally:
            audio_q.put_nowait(None)

    async def _animate(self, audio_q: asyncio.Queue) -> None:
        """Frames with their audio; if animation fails, the audio not yet shown goes out alone."""
        forwarded = bytearray()  # every byte of reply audio handed to animation
        shown = 0  # bytes of it that came back inside frames

        async def audio() -> AsyncIterator[bytes]:
            async for pcm in _drain(audio_q):
                forwarded.extend(pcm)
                yield pcm

        try:
            with self._stage("sda") as metadata:
                async for frame in self._stages.sda.animate(audio(), self._request.avatar_id, self._request.meta,
                                                            self._media.video, metadata):
                    self._mark("first_frame", "sda")
                    shown += len(frame.pcm)
                    self._emit(self._out.frame(frame.pts_s, frame.pcm, frame.image, frame.keyframe))
                    self.playback.sent(shown / BYTES_PER_S, frame.pcm)
        except StageFailed as err:
            self._emit({"type": "warning", "code": "video_unavailable",
                        "message": f"animation stopped ({err}); continuing with audio only"})
            await self._audio_only(audio(), forwarded, shown)

    async def _audio_only(self, audio: AsyncIterator[bytes], forwarded: bytearray, shown: int) -> None:
        position = shown
        if len(forwarded) > shown:
            self._send_audio(position, bytes(forwarded[shown:]))
            position = len(forwarded)
        async for pcm in audio:
            self._send_audio(position, pcm)
            position += len(pcm)
        for message in self._out.end():
            self._emit(message)

    def _send_audio(self, position: int, pcm: bytes) -> None:
        self._mark("first_audio_only", "tts")
        for message in self._out.audio(position / BYTES_PER_S, pcm):
            self._emit(message)
        self.playback.sent((position + len(pcm)) / BYTES_PER_S, pcm)
