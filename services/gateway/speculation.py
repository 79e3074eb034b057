"""Speculation, one gate: the reply starts on the partial transcript decoded when the speaker paused, before the
end of their turn. Its text engine and speech synthesis both run (speech up to `lead_s` seconds ahead, nothing is
heard yet), so when the turn ends the first clause's audio is already made and only animation is left to do. If
the final transcript says the same words (fillers, case and punctuation aside), that reply is kept and goes on
paced by its listener; if not, it is cancelled and the reply starts on the final.

The speculative start opens the turn's trace: its `turn` span (and the `llm` and `tts` calls under it) becomes
the kept reply's span; a dropped speculation ends its span renamed `speculation (<outcome>)`."""

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable

from prometheus_client import Counter

from services.common.tracing import start_turn_span
from services.gateway.reply_processors import MadeBefore, Paced, ReplyContext, Speech, Text, run
from services.gateway.spoken_words import meaningful_words
from services.gateway.stages import BYTES_PER_S, SpeechChunk, StageFailed, Stages

OUTCOMES = Counter("avatar_gateway_speculation_total", "Speculative reply starts, by outcome", ["outcome"])


class Speculation:
    """A reply's text and speech started early on `context.request.user_text`."""

    def __init__(self, stages: Stages, context: ReplyContext, lead_s: float):
        self.text = context.request.user_text
        self.span = start_turn_span(context.request.meta, speculated=True)
        context.span = self.span
        self._made: asyncio.Queue[MadeBefore | SpeechChunk | StageFailed | None] = asyncio.Queue()
        self._speech_s = 0.0  # seconds of speech made
        self._ahead_s: Callable[[], float] = lambda: self._speech_s  # before it is kept no one hears any of it
        self._lead_s = lead_s
        pacing = Paced(lambda: self._ahead_s() - self._lead_s, 0.0)
        self._task = asyncio.create_task(self._run([Text(stages.llm), pacing, Speech(stages.tts)], context))

    async def _run(self, processors: list, context: ReplyContext) -> None:
        try:
            async with contextlib.aclosing(run(processors, context, tap=self._tap)) as made:
                async for _ in made:  # speech chunks: the tap has them
                    pass
        except StageFailed as err:
            self._made.put_nowait(err)  # handed to whoever reads the reply
        finally:
            self._made.put_nowait(None)

    def _tap(self, processor: str, item: object) -> None:
        if processor == "text" and isinstance(item, str):
            self._made.put_nowait(MadeBefore("text", item))
        elif processor == "speech" and isinstance(item, SpeechChunk):
            self._speech_s += len(item.pcm) / BYTES_PER_S
            self._made.put_nowait(item)

    def matches(self, final_text: str) -> bool:
        return meaningful_words(final_text) == meaningful_words(self.text)

    def kept(self, ahead_s: Callable[[], float], lead_s: float) -> "SpeculatedSpeech":
        """The reply to the final: from now on speech is paced by its listener (`ahead_s`: how far what is made
        runs ahead of what they heard, at most `lead_s`)."""
        OUTCOMES.labels("kept").inc()
        self._ahead_s, self._lead_s = ahead_s, lead_s
        return SpeculatedSpeech(self)

    def stop(self) -> None:
        """The kept reply ended (or was cut): its text engine and synthesis calls, if still running, end too."""
        self._task.cancel()

    def cancel(self, outcome: str) -> None:
        self._task.cancel()
        OUTCOMES.labels(outcome).inc()
        self.span.update_name(f"speculation ({outcome})")
        self.span.end()

    async def made(self) -> AsyncIterator[MadeBefore | SpeechChunk]:
        """What it made already, then the rest as it comes."""
        while (item := await self._made.get()) is not None:
            if isinstance(item, StageFailed):
                raise item
            yield item


class SpeculatedSpeech:
    """A kept speculation's speech (its text seen by the tap as the text engine's), standing in for the text engine
    and speech synthesis."""

    name = "speech"

    def __init__(self, speculation: Speculation):
        self._speculation = speculation

    async def process(self, items: AsyncIterable, reply: ReplyContext) -> AsyncIterator[MadeBefore | SpeechChunk]:
        async for item in self._speculation.made():
            yield item


class SpeculationGate:
    """At most one speculation at a time, started at a pause and judged against the final transcript."""

    def __init__(self, stages: Stages, enabled: bool, lead_s: float):
        self._stages = stages
        self._enabled = enabled
        self._lead_s = lead_s
        self._running: Speculation | None = None

    def on_partial(self, text: str, speech_paused: bool, context: Callable[[str], ReplyContext]) -> None:
        """A partial transcript: a different one drops the speculation under way; one decoded at a pause
        starts one (`context(text)` says what to answer and in which voice)."""
        if self._running is not None and not self._running.matches(text):
            self.drop("missed")  # the user went on speaking, or said something else
        if self._enabled and speech_paused and text and self._running is None:
            self._running = Speculation(self._stages, context(text), self._lead_s)

    def take(self, final_text: str) -> Speculation | None:
        """The speculation to keep for the reply to `final_text`, if it said the same; any other is dropped."""
        running, self._running = self._running, None
        if running is not None and not running.matches(final_text):
            running.cancel("missed")
            return None
        return running

    def drop(self, outcome: str = "missed") -> None:
        if self._running is not None:
            self._running.cancel(outcome)
            self._running = None
