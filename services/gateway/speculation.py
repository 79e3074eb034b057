"""Speculation: the LLM starts on the partial transcript decoded when the speaker paused, before the end-of-turn
silence has run out. If the final transcript says the same words (fillers, case and punctuation aside), the reply
already under way is kept (its first tokens are there when the turn ends); if not, it is cancelled and the reply
starts on the final.

The speculative start opens the turn's trace: its `turn` span (and the `llm` call under it) becomes the kept
reply's span; a dropped speculation ends its span renamed `speculation (<outcome>)`."""

import asyncio

import grpc
from avatar.llm.v1 import llm_pb2
from opentelemetry import trace
from prometheus_client import Counter

from services.common.tracing import outgoing_metadata, start_child_span, start_turn_span
from services.gateway.grpc_streams import responses
from services.gateway.spoken_words import meaningful_words
from services.gateway.stage_clients import StageClients

OUTCOMES = Counter("avatar_gateway_speculation_total", "Speculative LLM starts, by outcome", ["outcome"])


class SpeculativeReply:
    def __init__(self, clients: StageClients, request: llm_pb2.GenerateRequest):
        self.text = request.user_text
        self.span = start_turn_span(request.meta, speculated=True)
        self._llm_span = start_child_span(self.span, "llm")
        self._responses: asyncio.Queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(clients, request))

    async def _run(self, clients: StageClients, request: llm_pb2.GenerateRequest) -> None:
        call = clients.llm.Generate(request, metadata=outgoing_metadata(self._llm_span))
        try:
            async for response in responses(call, "Generate"):
                self._responses.put_nowait(response)
        except grpc.aio.AioRpcError as err:
            self._llm_span.set_status(trace.StatusCode.ERROR, err.code().name)
            self._responses.put_nowait(err)  # handed to whoever reads the reply
        finally:
            self._llm_span.end()
            self._responses.put_nowait(None)

    def matches(self, final_text: str) -> bool:
        return meaningful_words(final_text) == meaningful_words(self.text)

    def cancel(self, outcome: str = "missed") -> None:
        self._task.cancel()
        OUTCOMES.labels(outcome).inc()
        self.span.update_name(f"speculation ({outcome})")
        self.span.end()

    async def responses(self):
        """The LLM responses: those already received, then the rest as they come."""
        OUTCOMES.labels("kept").inc()
        while (item := await self._responses.get()) is not None:
            if isinstance(item, grpc.aio.AioRpcError):
                raise item
            yield item
