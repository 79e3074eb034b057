"""A reply as a list of processors joined by bounded queues:

    text ──deltas──▶ speech ──audio chunks──▶ animation ──frames──▶ the caller (a client, a REST answer)

Each processor reads what the one before it makes and makes what the next one reads; `run` gives each its own
task, so the first clause is heard and seen while the text engine still writes the rest. A new step (a mark on
the audio, a filter on the text, a second face) is one more entry in `reply_processors`, and the WebSocket
conversation and the REST calls run the same list (REST runs the part it needs: speech alone, animation
alone). Control goes ahead of data: interrupting a reply cancels every processor at once, whatever is still
queued between them; pausing and resuming act on the client's playback, not on the queues.

What a reply makes is the processors' business; what the conversation does with it (the `reply_delta` events,
the latency marks, the echo reference) it does in a tap that sees every item as it is made.
"""

import asyncio
import contextlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry import trace

from services.common.clauses import MAX_CLAUSE_CHARS, SENTENCE_END
from services.common.tracing import outgoing_metadata, start_child_span
from services.gateway.playback import letters
from services.gateway.speculation import Speculation
from services.gateway.stages import (
    OUTPUT_RATE, Animator, Face, Finish, Frame, Metadata, ReplyRequest, SpeechChunk, StageFailed, Stages,
    Synthesizer, TextEngine, VideoOut, Voice,
)

QUEUE = 256  # items waiting between two processors
_SENTENCE_END = re.compile(SENTENCE_END + "$")  # text that ends here ends a clause once a space follows
_END = object()


@dataclass(frozen=True)
class AudioOnly:
    """Reply audio that goes out without frames (animation failed): `pcm` from `position_s` of the reply."""

    position_s: float
    pcm: bytes


@dataclass(frozen=True)
class VideoLost:
    """Animation failed; the reply goes on as audio only (`AudioOnly` items follow)."""

    error: StageFailed


@dataclass
class ReplyContext:
    """What the processors know of the reply they make: the request, the voice and face, how frames are sent, and
    the turn's span (each processor's stage call is a child span of it; none for a REST call)."""

    request: ReplyRequest
    voice: Voice = Voice()
    face: Face | None = None  # None: the request's avatar
    video: VideoOut = field(default_factory=VideoOut)
    audio_rate: int = OUTPUT_RATE  # the sample rate of the audio animation reads
    span: trace.Span | None = None

    @property
    def whose_face(self) -> Face:
        return self.face or Face(self.request.avatar_id)

    @contextlib.contextmanager
    def call(self, name: str) -> Iterator[Metadata]:
        """A stage call: its child span of the turn, whose context travels with the call."""
        if self.span is None:
            yield ()
            return
        span = start_child_span(self.span, name)
        try:
            yield outgoing_metadata(span)
        except StageFailed as err:
            span.set_status(trace.StatusCode.ERROR, str(err))
            raise
        finally:
            span.end()


class Processor(Protocol):
    name: str  # what the tap and the stall watchdog call it

    def process(self, items: AsyncIterable, reply: ReplyContext) -> AsyncIterator: ...


class Text:
    """The text engine's answer to the request: text deltas, then its `Finish` where it says one."""

    name = "text"

    def __init__(self, engine: TextEngine):
        self._engine = engine

    async def process(self, items: AsyncIterable, reply: ReplyContext) -> AsyncIterator[str | Finish]:
        with reply.call("llm") as metadata:
            async for item in self._engine.generate(reply.request, metadata):
                yield item


class SpeculatedText:
    """The answer a speculation started before the end of the turn (its own `llm` span covers the call)."""

    name = "text"

    def __init__(self, speculation: Speculation):
        self._speculation = speculation

    async def process(self, items: AsyncIterable, reply: ReplyContext) -> AsyncIterator[str | Finish]:
        async for delta in self._speculation.deltas():
            yield delta


class Paced:
    """Text goes on to speech only while the reply's speech runs less than `lead_s` ahead of what the user has
    heard: `lead(letters)` says how far it runs ahead once the letters given to speech so far are spoken (the audio
    made, and the text speech synthesis has and has not spoken yet). A long answer is spoken and animated a few
    seconds ahead of the listener, not as fast as the CPU allows, so it does not take the CPU from the frames this
    or another session is about to show (the first clauses of every reply still go at once). Text is held only
    where a sentence ends (or, in a sentence that runs on and on, between words), after the space that ends it:
    speech synthesis speaks whole clauses, and held mid-sentence it would wait with half of one. Held text goes on
    whatever the letters not begun yet once less than `CUSHION_S` of the speech made (`ahead()`) is left to hear
    and speech synthesis has made nothing (`made()`, seconds of it) for `IDLE_S`: it may be waiting for the very
    text held to finish a clause (a sentence cut between words, an abbreviation's full stop), and would never
    begin them. Nothing goes on while the listener's playback is paused (speech began over the reply): the
    recogniser, which decides whether it goes on, gets the CPU."""

    name = "pacing"
    CUSHION_S = 2.0
    IDLE_S = 0.5

    def __init__(self, lead: Callable[[int], float], lead_s: float, ahead: Callable[[], float],
                 made: Callable[[], float], paused: Callable[[], bool] = lambda: False, poll_s: float = 0.1):
        self._lead = lead
        self._lead_s = lead_s
        self._ahead = ahead
        self._made = made
        self._paused = paused
        self._poll_s = poll_s

    async def _hold(self, given: int) -> None:
        """Until the speech runs less than the lead ahead of the listener, or its synthesis waits for more text."""
        loop = asyncio.get_running_loop()
        made, since = self._made(), loop.time()
        while self._lead(given) > self._lead_s:
            if self._made() != made:
                made, since = self._made(), loop.time()
            elif loop.time() - since >= self.IDLE_S and self._ahead() < self.CUSHION_S:
                return
            await asyncio.sleep(self._poll_s)

    async def process(self, items: AsyncIterable, reply: ReplyContext) -> AsyncIterator:
        given = 0  # letters given to speech (spaces not counted)
        running = 0  # characters given since the text was last held
        last = ""  # the last delta given
        async for item in items:
            if isinstance(item, str):
                rest = item.lstrip()
                if rest != item and (_SENTENCE_END.search(last) or running > MAX_CLAUSE_CHARS):
                    yield item[: len(item) - len(rest)]  # the space that completes the clause for speech
                    running, item = 0, rest
                    await self._hold(given)
                if not item:
                    continue
                given += letters(item)
                running += len(item)
                last = item
            while self._paused():
                await asyncio.sleep(self._poll_s)
            yield item


class AnimationPaced:
    """Speech goes on to animation while the audio given to it runs less than `lead_s` ahead of what the listener
    has heard (`heard()`, seconds of the reply's audio), and not while the listener's playback is paused. Animation
    otherwise makes frames as fast as the CPU allows, seconds ahead of the listener; held to a cushion it takes only
    what keeps the listener's buffer full, and the CPU it leaves goes to the frames another reply (just begun, its
    buffer thin) needs now. While paused, the frames of audio already made wait, as the listener does, and the
    recogniser gets the CPU to decide whether the reply goes on."""

    name = "holding"

    def __init__(self, heard: Callable[[], float], lead_s: float, paused: Callable[[], bool], poll_s: float = 0.05):
        self._heard = heard
        self._lead_s = lead_s
        self._paused = paused
        self._poll_s = poll_s

    async def process(self, items: AsyncIterable, reply: ReplyContext) -> AsyncIterator:
        given = 0.0  # seconds of audio given to animation
        bytes_per_s = reply.audio_rate * 2
        async for chunk in items:
            while self._paused() or given - self._heard() > self._lead_s:
                await asyncio.sleep(self._poll_s)
            given += len(chunk.pcm) / bytes_per_s
            yield chunk


async def _text(items: AsyncIterable) -> AsyncIterator[str]:
    async for item in items:
        if isinstance(item, str):
            yield item


class Speech:
    """Text deltas spoken: audio chunks, each clause's first one naming its clause."""

    name = "speech"

    def __init__(self, synthesizer: Synthesizer):
        self._synthesizer = synthesizer

    async def process(self, items: AsyncIterable, reply: ReplyContext) -> AsyncIterator[SpeechChunk]:
        with reply.call("tts") as metadata:
            async for chunk in self._synthesizer.synthesize(_text(items), reply.voice, reply.request.meta, metadata):
                yield chunk


class SpeculatedSpeech:
    """The speech a speculation began on its first sentence (its own `tts` span covers the call), given the rest of
    the text."""

    name = "speech"

    def __init__(self, speculation: Speculation):
        self._speculation = speculation

    async def process(self, items: AsyncIterable, reply: ReplyContext) -> AsyncIterator[SpeechChunk]:
        async for chunk in self._speculation.speech_ahead.speech(_text(items)):
            yield chunk


class Animation:
    """Audio chunks animated: frames, each with the audio it shows. If animation fails, a `VideoLost` and then the
    audio not yet shown as `AudioOnly` slices: the reply goes on heard, unseen."""

    name = "animation"

    def __init__(self, animator: Animator):
        self._animator = animator

    async def process(self, items: AsyncIterable, reply: ReplyContext) -> AsyncIterator[Frame | VideoLost | AudioOnly]:
        forwarded = bytearray()  # every byte of audio handed to animation
        shown = 0  # bytes of it that came back inside frames
        bytes_per_s = reply.audio_rate * 2

        async def speech() -> AsyncIterator[SpeechChunk]:
            async for chunk in items:
                forwarded.extend(chunk.pcm)
                yield chunk

        try:
            with reply.call("sda") as metadata:
                async for frame in self._animator.animate(speech(), reply.whose_face, reply.request.meta, reply.video,
                                                          metadata, reply.audio_rate):
                    shown += len(frame.pcm)
                    yield frame
        except StageFailed as err:
            yield VideoLost(err)
            if len(forwarded) > shown:
                yield AudioOnly(shown / bytes_per_s, bytes(forwarded[shown:]))
            async for chunk in speech():
                yield AudioOnly((len(forwarded) - len(chunk.pcm)) / bytes_per_s, chunk.pcm)


def reply_processors(stages: Stages, speculation: Speculation | None = None, pacing: Paced | None = None,
                     holding: AnimationPaced | None = None) -> list[Processor]:
    """The reply's processors in order; a speculation already under way stands in for the text engine and speech
    synthesis, and a conversation paces speech and animation to its listener (a REST call has neither)."""
    if speculation is not None:
        text, speech = SpeculatedText(speculation), SpeculatedSpeech(speculation)
    else:
        text, speech = Text(stages.llm), Speech(stages.tts)
    return [text, *([pacing] if pacing else []), speech, *([holding] if holding else []), Animation(stages.sda)]


def part(processors: list[Processor], first: str, last: str) -> list[Processor]:
    """The processors from the one named `first` to the one named `last` (a REST call runs only what it needs)."""
    names = [p.name for p in processors]
    return processors[names.index(first) : names.index(last) + 1]


async def _nothing() -> AsyncIterator:
    return
    yield


class _Inbox:
    """What a processor reads: the items of the one before it, until it ends. Each `async for` over it reads on
    from where the last one stopped, so a reader cancelled midway (a stage call's feeder, when the call fails)
    loses nothing and closes nothing: the processor can read the rest another way (animation: as audio only)."""

    def __init__(self, queue: asyncio.Queue):
        self._queue = queue
        self._ended = False

    def __aiter__(self) -> AsyncIterator:
        return self._read()

    async def _read(self) -> AsyncIterator:
        while not self._ended:
            if (item := await self._queue.get()) is _END:
                self._ended = True
                return
            yield item


async def run(processors: list[Processor], reply: ReplyContext, source: AsyncIterable | None = None,
              tap: Callable[[str, object], None] | None = None) -> AsyncIterator:
    """The last processor's items, each processor running as its own task; `source` feeds the first. `tap` sees
    every item of every processor as it is made. The first processor to fail ends the run with its error; closing
    the run (use `contextlib.aclosing`) cancels every processor."""
    queues = [asyncio.Queue(maxsize=QUEUE) for _ in processors]

    async def pump(index: int, processor: Processor) -> None:
        if index:
            inbox = _Inbox(queues[index - 1])
        else:
            inbox = aiter(source) if source is not None else _nothing()
        async for item in processor.process(inbox, reply):
            if tap is not None:
                tap(processor.name, item)
            await queues[index].put(item)
        await queues[index].put(_END)

    tasks = [asyncio.create_task(pump(i, p), name=f"reply-{p.name}") for i, p in enumerate(processors)]
    work = asyncio.gather(*tasks)
    last = queues[-1]
    get: asyncio.Future | None = None
    try:
        while True:
            get = asyncio.ensure_future(last.get())
            await asyncio.wait({get, work}, return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                get.cancel()
                await work  # the first failure, if any; without one every processor has ended and the rest is queued
                async for item in _Inbox(last):
                    yield item
                break
            if (item := get.result()) is _END:
                break
            yield item
        await work
    finally:
        if get is not None:
            get.cancel()  # the run was closed while it waited: its read of the last queue goes too
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if work.done() and not work.cancelled():
            work.exception()  # raised above, or the run was closed first: nothing left to report
