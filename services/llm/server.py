"""The text-engine gRPC servicer: validation, prompt assembly, and token streaming with real cancellation."""

import asyncio
import logging

import grpc
from avatar.llm.v1 import llm_pb2, llm_pb2_grpc

from core.errors import BadRequest, NotFound
from core.llm.backends.base_backend import Completion, LlmBackend, Sampling
from core.llm.backends.llama_cpp_backend import LlamaCppBackend
from core.llm.backends.openai_compatible import OpenAICompatibleBackend
from core.llm.persona import Persona, PersonaBook
from services.common import metrics
from services.llm.config import LlmSettings
from services.llm.knowledge import Embedder, Knowledge
from services.llm.prompt import build_messages, next_turn_prefix
from services.llm.speakable import speakable

_FINISH = {"stop": llm_pb2.STOP, "length": llm_pb2.LENGTH, "stop_sequence": llm_pb2.STOP_SEQUENCE}
_DONE = object()
log = logging.getLogger(__name__)


def make_backend(settings: LlmSettings) -> LlmBackend:
    if settings.backend == "openai":
        return OpenAICompatibleBackend(settings.openai_base_url, settings.openai_model,
                                       settings.openai_api_key.get_secret_value(), settings.context_tokens)
    return LlamaCppBackend(settings.model_path, settings.lora_path, settings.context_tokens, settings.threads,
                           settings.prefix_cache_mb, settings.slots, settings.leading_tokens)


class LlmService(llm_pb2_grpc.LlmServiceServicer):
    service_name = llm_pb2.DESCRIPTOR.services_by_name["LlmService"].full_name

    def __init__(self, settings: LlmSettings):
        self._settings = settings
        self._backend = make_backend(settings)
        self._knowledge = Knowledge(Embedder(), top_k=settings.knowledge_passages)
        self._prefills: dict[str, asyncio.Future] = {}  # by session
        self._personas = PersonaBook(settings.avatars_dir, Persona(settings.persona_name, settings.persona_style))

    def add_to_server(self, server: grpc.aio.Server) -> None:
        llm_pb2_grpc.add_LlmServiceServicer_to_server(self, server)

    def load(self) -> None:
        self._backend.load()
        if self._settings.knowledge_passages:
            self._knowledge.warm_up()

    async def ListModels(self, request, context):
        info = llm_pb2.ModelInfo(
            name=self._backend.name, context_tokens=self._backend.context_tokens, backend=self._settings.backend
        )
        return llm_pb2.ListModelsResponse(models=[info], default_model=self._backend.name)

    def _sampling(self, params: llm_pb2.GenerationParams) -> Sampling:
        s = self._settings
        if params.max_tokens < 0 or not 0 <= params.top_p <= 1 or params.temperature < 0:
            raise BadRequest("max_tokens and temperature must be >= 0 and top_p within [0, 1]")
        return Sampling(
            max_tokens=params.max_tokens or s.max_tokens,
            temperature=params.temperature if params.HasField("temperature") else s.temperature,
            top_p=params.top_p or s.top_p,
            repetition_penalty=params.repetition_penalty or s.repetition_penalty,
            stop=tuple(params.stop),
            seed=params.seed,
        )

    def _prefill_next_turn(self, prefix: list[dict] | None, adapter: str, session: str) -> None:
        """The session's next prompt up to its next question, evaluated while the user listens and speaks: its
        first reply token then waits for the question's tokens alone."""
        if prefix is None or not session:
            return
        work = asyncio.get_running_loop().run_in_executor(None, self._backend.prefill, prefix, adapter, session)
        self._prefills[session] = work
        work.add_done_callback(lambda _: self._prefilled(session, work))

    def _prefilled(self, session: str, work: asyncio.Future) -> None:
        if self._prefills.get(session) is work:
            del self._prefills[session]
        if not work.cancelled() and work.exception() is not None:
            log.warning("prefilling the next turn failed: %s", work.exception())

    async def _after_prefill(self, session: str) -> None:
        """A session's next request waits for its prefill under way: that is the very work it would do again."""
        if (work := self._prefills.get(session)) is not None:
            await asyncio.wait([work])

    async def Generate(self, request, context):
        s = self._settings
        if request.model not in ("", "default", self._backend.name):
            raise NotFound(f"unknown model {request.model!r}; available: {self._backend.name}")
        text = request.user_text.strip()
        if not text:
            raise BadRequest("user_text is empty")
        if len(text) > s.max_user_chars:
            raise BadRequest(f"user_text of {len(text)} characters exceeds {s.max_user_chars}")
        if len(request.history) > s.max_history_messages:
            raise BadRequest(f"history of {len(request.history)} messages exceeds {s.max_history_messages}")
        persona = self._personas.get(request.avatar_id).merged(
            request.persona.name, request.persona.style, request.persona.system_prompt
        )
        sampling = self._sampling(request.params)
        budget = self._backend.context_tokens - sampling.max_tokens
        bundle = self._personas.bundle(request.avatar_id)
        facts = await asyncio.to_thread(self._knowledge.relevant, bundle.knowledge if bundle else None, text)
        messages = build_messages(persona, list(request.history), text, self._backend.count_tokens, budget, facts,
                                  s.history_tokens)
        adapter = str(bundle.adapter) if bundle and bundle.adapter.is_file() else ""

        await self._after_prefill(request.meta.session_id)
        completion = Completion()
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue = asyncio.Queue()

        def produce() -> None:
            try:
                session = request.meta.session_id
                for delta in self._backend.stream(messages, sampling, completion, adapter, session):
                    loop.call_soon_threadsafe(deltas.put_nowait, delta)
            except BaseException as err:  # handed to the RPC, which maps it to a status
                loop.call_soon_threadsafe(deltas.put_nowait, err)
            finally:
                loop.call_soon_threadsafe(deltas.put_nowait, _DONE)

        worker = loop.run_in_executor(None, produce)
        reply = ""
        try:
            while (item := await deltas.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                if clean := speakable(item):
                    reply += clean
                    yield llm_pb2.GenerateResponse(delta=clean, meta=request.meta)
            self._prefill_next_turn(next_turn_prefix(messages, text, reply), adapter, request.meta.session_id)
            metrics.LLM_QUEUE_WAIT.observe(completion.queued_s)
            metrics.PROMPT_TOKENS.labels("reused").inc(completion.cached_prompt_tokens)
            metrics.PROMPT_TOKENS.labels("evaluated").inc(completion.prompt_tokens - completion.cached_prompt_tokens)
            yield llm_pb2.GenerateResponse(
                finish_reason=_FINISH.get(completion.finish_reason, llm_pb2.STOP),
                usage=llm_pb2.Usage(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                                    cached_prompt_tokens=completion.cached_prompt_tokens),
                meta=request.meta,
            )
        finally:
            completion.cancel.set()  # the caller cancelled or went away: the generation thread stops at its next token
            await asyncio.shield(worker)
