"""Speculation, one gate: the LLM starts on the partial transcript decoded when the speaker paused, before the
end-of-turn silence has run out. If the final transcript says the same words (fillers, case and punctuation
aside), the reply already under way is kept (its first tokens are there when the turn ends); if not, it is
cancelled and the reply starts on the final.

The speculative start opens the turn's trace: its `turn` span (and the `llm` call under it) becomes the kept
reply's span; a dropped speculation ends its span renamed `speculation (<outcome>)`."""

import asyncio
from collections.abc import AsyncIterator, Callable

from opentelemetry import trace
from prometheus_client import Counter

from services.common.tracing import outgoing_metadata, start_child_span, start_turn_span
from services.gateway.spoken_words import meaningful_words
from services.gateway.stages import Finish, ReplyRequest, StageFailed, TextEngine

OUTCOMES = Counter("avatar_gateway_speculation_total", "Speculative LLM starts, by outcome", ["outcome"])


class Speculation:
    """An LLM reply started early on `request.user_text`."""

    def __init__(self, llm: TextEngine, request: ReplyRequest):
        self.text = request.user_text
        self.span = start_turn_span(request.meta, speculated=True)
        self._llm_span = start_child_span(self.span, "llm")
        self._deltas: asyncio.Queue[str | Finish | StageFailed | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(llm, request))

    async def _run(self, llm: TextEngine, request: ReplyRequest) -> None:
        try:
            async for delta in llm.generate(request, outgoing_metadata(self._llm_span)):
                self._deltas.put_nowait(delta)
        except StageFailed as err:
            self._llm_span.set_status(trace.StatusCode.ERROR, str(err))
            self._deltas.put_nowait(err)  # handed to whoever reads the reply
        finally:
            self._llm_span.end()
            self._deltas.put_nowait(None)

    def matches(self, final_text: str) -> bool:
        return meaningful_words(final_text) == meaningful_words(self.text)

    def stop(self) -> None:
        """The kept reply ended (or was cut): its text engine call, if still running, ends too."""
        self._task.cancel()

    def cancel(self, outcome: str) -> None:
        self._task.cancel()
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

    def __init__(self, llm: TextEngine, enabled: bool):
        self._llm = llm
        self._enabled = enabled
        self._running: Speculation | None = None

    def on_partial(self, text: str, speech_paused: bool, request: Callable[[str], ReplyRequest]) -> None:
        """A partial transcript: a different one drops the speculation under way; one decoded at a pause
        starts one (`request(text)` makes its ReplyRequest)."""
        if self._running is not None and not self._running.matches(text):
            self.drop("missed")  # the user went on speaking, or said something else
        if self._enabled and speech_paused and text and self._running is None:
            self._running = Speculation(self._llm, request(text))

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
