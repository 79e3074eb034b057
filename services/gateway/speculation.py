"""Speculation, one gate: the LLM starts on the partial transcript decoded when the speaker paused, before the
end-of-turn silence has run out, and speech synthesis starts on the reply's first sentence as soon as it is written.
If the final transcript says the same words (fillers, case and punctuation aside) in the same voice, the reply
already under way is kept (its first tokens, and often its first sentence's audio, are there when the turn ends);
if not, both calls are cancelled and the reply starts on the final. A speculation dropped costs at most one
sentence's synthesis.

The speculative start opens the turn's trace: its `turn` span (and the `llm` and `tts` calls under it) becomes the
kept reply's span; a dropped speculation ends its span renamed `speculation (<outcome>)`."""

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable

from opentelemetry import trace
from prometheus_client import Counter

from services.common.clauses import MAX_CLAUSE_CHARS, SENTENCE_END
from services.common.tracing import outgoing_metadata, start_child_span, start_turn_span
from services.gateway.spoken_words import meaningful_words
from services.gateway.stages import (
    Finish, ReplyRequest, SpeechChunk, StageFailed, Stages, Synthesizer, TextEngine, TurnMeta, Voice,
)

OUTCOMES = Counter("avatar_gateway_speculation_total", "Speculative LLM starts, by outcome", ["outcome"])
_SENTENCE_DONE = re.compile(SENTENCE_END + r"\s")  # speech synthesis has cut the sentence once a space follows


async def _relay(items: AsyncIterator, into: asyncio.Queue, span: trace.Span) -> bool:
    """A stage call's items put into `into`, then its failure (handed to whoever reads them) and None; its span ends
    with it. Whether it ended without failing."""
    try:
        async for item in items:
            into.put_nowait(item)
        return True
    except StageFailed as err:
        span.set_status(trace.StatusCode.ERROR, str(err))
        into.put_nowait(err)
        return False
    finally:
        span.end()
        into.put_nowait(None)


class SpeechAhead:
    """Speech synthesis of a speculated reply: while the turn's end is still being judged, the call is given the
    reply's text up to its first sentence's end; once the reply is kept, the rest."""

    def __init__(self, tts: Synthesizer, voice: Voice, meta: TurnMeta, span: trace.Span):
        self._text: asyncio.Queue[str | None] = asyncio.Queue()
        # unbounded, as the text queue: synthesis makes no more than the text it is given, which pacing bounds
        self._chunks: asyncio.Queue[SpeechChunk | StageFailed | None] = asyncio.Queue()
        self._ahead = True  # still giving the first sentence
        self._given = ""  # the text given before the reply was kept
        self._span = start_child_span(span, "tts")
        self._task = asyncio.create_task(self._run(tts, voice, meta))

    async def _run(self, tts: Synthesizer, voice: Voice, meta: TurnMeta) -> None:
        async def text() -> AsyncIterator[str]:
            while (delta := await self._text.get()) is not None:
                yield delta

        await _relay(tts.synthesize(text(), voice, meta, outgoing_metadata(self._span)), self._chunks, self._span)

    def written(self, delta: str) -> None:
        """A delta of the reply's text as the text engine writes it: given to synthesis while the first sentence
        is not yet whole."""
        if not self._ahead:
            return
        self._text.put_nowait(delta)
        self._given += delta
        self._ahead = not _SENTENCE_DONE.search(self._given) and len(self._given) < MAX_CLAUSE_CHARS

    def all_written(self) -> None:
        """The text engine has written the whole reply: if all of it was given, synthesis speaks it to its end."""
        if self._ahead:
            self._ahead = False
            self._text.put_nowait(None)

    async def speech(self, text: AsyncIterable[str]) -> AsyncIterator[SpeechChunk]:
        """The kept reply's speech. `text`: the whole reply's text, in the order it was written; what synthesis was
        given ahead is skipped, the rest is given as it comes."""
        self._ahead = False
        feeder = asyncio.create_task(self._feed(text, len(self._given)))
        try:
            while (item := await self._chunks.get()) is not None:
                if isinstance(item, StageFailed):
                    raise item
                yield item
            await feeder  # surfaces a failure of the text that fed it
        finally:
            feeder.cancel()

    async def _feed(self, text: AsyncIterable[str], skip: int) -> None:
        async for delta in text:
            if skip >= len(delta):
                skip -= len(delta)
                continue
            self._text.put_nowait(delta[skip:])
            skip = 0
        self._text.put_nowait(None)

    def cancel(self) -> None:
        self._task.cancel()


class Speculation:
    """A reply started early on `request.user_text`: its text, and its speech in `voice` (`speech_ahead`)."""

    def __init__(self, llm: TextEngine, tts: Synthesizer, request: ReplyRequest, voice: Voice):
        self.text = request.user_text
        self.voice = voice
        self.span = start_turn_span(request.meta, speculated=True)
        self.speech_ahead = SpeechAhead(tts, voice, request.meta, self.span)
        self._llm_span = start_child_span(self.span, "llm")
        self._deltas: asyncio.Queue[str | Finish | StageFailed | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(llm, request))

    async def _run(self, llm: TextEngine, request: ReplyRequest) -> None:
        async def written() -> AsyncIterator[str | Finish]:
            async for delta in llm.generate(request, outgoing_metadata(self._llm_span)):
                if isinstance(delta, str):
                    self.speech_ahead.written(delta)
                yield delta

        if await _relay(written(), self._deltas, self._llm_span):
            self.speech_ahead.all_written()

    def matches(self, final_text: str) -> bool:
        return meaningful_words(final_text) == meaningful_words(self.text)

    def stop(self) -> None:
        """The kept reply ended (or was cut): its calls, if still running, end too."""
        self._task.cancel()
        self.speech_ahead.cancel()

    def cancel(self, outcome: str) -> None:
        self.stop()
        OUTCOMES.labels(outcome).inc()
        self.span.update_name(f"speculation ({outcome})")
        self.span.end()

    async def deltas(self) -> AsyncIterator[str | Finish]:
        """The reply's text: what came already, then the rest as it comes."""
        OUTCOMES.labels("kept").inc()
        while (item := await self._deltas.get()) is not None:
            if isinstance(item, StageFailed):
                raise item
            yield item


class SpeculationGate:
    """At most one speculation at a time, started at a pause and judged against the final transcript."""

    def __init__(self, stages: Stages, enabled: bool):
        self._stages = stages
        self._enabled = enabled
        self._running: Speculation | None = None

    def on_partial(self, text: str, speech_paused: bool, request: Callable[[str], ReplyRequest],
                   voice: Callable[[], Voice]) -> None:
        """A partial transcript: a different one drops the speculation under way; one decoded at a pause
        starts one (`request(text)` makes its ReplyRequest), spoken in `voice()`."""
        if self._running is not None and not self._running.matches(text):
            self.drop("missed")  # the user went on speaking, or said something else
        if self._enabled and speech_paused and text and self._running is None:
            self._running = Speculation(self._stages.llm, self._stages.tts, request(text), voice())

    def take(self, final_text: str, voice: Voice) -> Speculation | None:
        """The speculation to keep for the reply to `final_text` in `voice`, if it said the same in it; any other
        is dropped."""
        running, self._running = self._running, None
        if running is not None and not running.matches(final_text):
            running.cancel("missed")
            return None
        if running is not None and running.voice != voice:
            running.cancel("voice changed")
            return None
        return running

    def drop(self, outcome: str = "missed") -> None:
        if self._running is not None:
            self._running.cancel(outcome)
            self._running = None
