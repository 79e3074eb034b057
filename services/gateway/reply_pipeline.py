"""One reply to the client: the reply's processors (`reply_processors.py`) run, and what they make goes out.

The first clause is heard and seen while the text engine is still writing the rest. If animation fails, the
reply goes on as audio only (with a warning); if the text engine or speech synthesis fails, the turn ends with a
typed error. Errors travel as events, never as exceptions out of this task; cancelling it (barge-in) cancels
every processor's stream.
"""

import asyncio
import contextlib
import time
from collections.abc import Callable

from opentelemetry import trace
from prometheus_client import Counter

from services.common.tracing import start_turn_span
from services.gateway import media_messages, reply_processors
from services.gateway.load_shedding import LoadShedding
from services.gateway.playback import Playback
from services.gateway.protocol import ErrorCode, error_event
from services.gateway.reply_processors import AudioOnly, ReplyContext, VideoLost
from services.gateway.speculation import Speculation
from services.gateway.stages import BYTES_PER_S, Frame, ReplyRequest, SpeechChunk, StageFailed, Stages, Voice

_WATCH_S = 0.1  # how often the reply's progress is looked at
MEDIA = Counter("avatar_gateway_reply_media_seconds_total", "Seconds of reply media sent to clients")


class ReplyPipeline:
    def __init__(self, stages: Stages, request: ReplyRequest, voice: Voice, emit: Callable[[dict | bytes], None],
                 ended_at: float, speculation: Speculation | None = None, playback: Playback | None = None,
                 stall_s: float = 15.0, client_media: media_messages.ClientMedia | None = None, lead_s: float = 8.0,
                 animation_lead_s: float = 2.5):
        """`voice`: how speech synthesis speaks. `ended_at`: time.perf_counter() at the end of
        the user's turn. `speculation`: a reply already under way, kept; otherwise the text engine is asked.
        `client_media`: the codecs the client chose (JPEG and PCM unless it chose others). `lead_s`: how far
        speech may run ahead of what the user has heard; `animation_lead_s`: how far the audio given to animation
        may."""
        self._request = request
        self._turn = request.meta.turn
        self._media = client_media or media_messages.ClientMedia()
        self._out = self._media.for_reply(self._turn)
        self._emit = emit
        self._speculation = speculation
        self.playback = playback or Playback()
        self._processors = reply_processors.reply_processors(
            stages, speculation,
            reply_processors.Paced(self.playback.lead_s, lead_s, self.playback.ahead_s, lambda: self.playback.spoken_s,
                                   lambda: self.playback.paused),
            reply_processors.AnimationPaced(self.playback.heard_s, animation_lead_s, lambda: self.playback.paused))
        self.text = ""
        self._marks: dict[str, int] = {}
        self._audio_only = False
        self._stall_s = stall_s  # no text, audio or frame for this long: the reply has stalled
        self._progress = (time.monotonic(), "start")  # when the reply last moved, and which processor moved it
        # The turn's span (opened by the speculation when one is kept, else at the end of the user's turn); its
        # events are the latency marks below.
        self._ended_ns = time.time_ns() - int((time.perf_counter() - ended_at) * 1e9)
        self._span = speculation.span if speculation else start_turn_span(request.meta, False, self._ended_ns)
        self._span.set_attribute("avatar.avatar_id", request.avatar_id)
        self._span.add_event("end_of_turn", timestamp=self._ended_ns)
        self._context = ReplyContext(request, voice, video=self._media.video, span=self._span)
        self._shedding = LoadShedding(self._media.video, self.playback,
                                      lambda warning: self._emit(warning | {"turn": self._turn}))

    def _mark(self, name: str, processor: str) -> None:
        """`processor` moved the reply on; the first time of `name` is a latency mark (an event on the turn's span)."""
        self._progress = (time.monotonic(), processor)
        if name not in self._marks:
            self._marks[name] = time.time_ns()
            self._span.add_event(name, timestamp=self._marks[name])

    @property
    def marks(self) -> dict[str, float]:
        """Milliseconds from the end of the user's turn to each first: the latency report the client gets."""
        return {name: max(0.0, round((ns - self._ended_ns) / 1e6, 1)) for name, ns in self._marks.items()}

    async def run(self) -> None:
        work, watchdog = asyncio.create_task(self._send()), asyncio.create_task(self._watch())
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
            self._shedding.close()
            for task in (work, watchdog):
                task.cancel()
            if self._speculation is not None:
                self._speculation.stop()
            await asyncio.gather(work, watchdog, return_exceptions=True)
            self._span.end()
        self._emit({"type": "turn_end", "turn": self._turn, "reply": self.text, "latency_ms": self.marks,
                    "speculated": self._speculation is not None})

    async def _watch(self) -> None:
        """Sheds pictures while the reply runs thin (`load_shedding.py`); ends the reply with stage_unavailable
        when no processor has moved it on for `stall_s` (a stage that hangs, a connection that went silent): a
        turn never stays open."""
        while True:
            await asyncio.sleep(_WATCH_S)
            self._shedding.check()
            at, processor = self._progress
            if time.monotonic() - at > self._stall_s and self.playback.ahead_s() <= 0:  # nothing left to hear
                raise StageFailed("reply", f"no text, audio or frame for {self._stall_s:.0f} s (last from {processor})",
                                  ErrorCode.STAGE_UNAVAILABLE)

    def _tap(self, processor: str, item: object) -> None:
        """What the text and speech processors make, as they make it: the text shown, the audio the echo check
        will hear."""
        if processor == "text" and isinstance(item, str):
            self._mark("llm_first_token", processor)
            self.text += item
            self._emit({"type": "reply_delta", "turn": self._turn, "text": item})
        elif processor == "speech" and isinstance(item, SpeechChunk):
            self._mark("tts_first_audio", processor)
            self.playback.spoken(len(item.pcm) / BYTES_PER_S, item.text)

    async def _send(self) -> None:
        """The last processor's frames (or audio alone) to the client."""
        shown = 0  # bytes of reply audio sent
        run = reply_processors.run(self._processors, self._context, tap=self._tap)
        async with contextlib.aclosing(run) as made:
            async for item in made:
                if isinstance(item, Frame):
                    shown += len(item.pcm)
                    if item.image:
                        self._mark("first_frame", "animation")
                        self._emit(self._out.frame(item.pts_s, item.pcm, item.image, item.keyframe))
                    else:  # a frame without a picture (pictures shed): its audio goes alone
                        for message in self._out.audio(item.pts_s, item.pcm):
                            self._emit(message)
                    self.playback.sent(shown / BYTES_PER_S, item.pcm)
                    MEDIA.inc(len(item.pcm) / BYTES_PER_S)
                elif isinstance(item, VideoLost):
                    self._audio_only = True
                    self._emit({"type": "warning", "code": "video_unavailable",
                                "message": f"animation stopped ({item.error}); continuing with audio only"})
                elif isinstance(item, AudioOnly):
                    self._mark("first_audio_only", "speech")
                    for message in self._out.audio(item.position_s, item.pcm):
                        self._emit(message)
                    self.playback.sent(item.position_s + len(item.pcm) / BYTES_PER_S, item.pcm)
                    MEDIA.inc(len(item.pcm) / BYTES_PER_S)
        if self._audio_only:
            for message in self._out.end():
                self._emit(message)
