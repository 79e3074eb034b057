"""GGUF models through llama.cpp (llama-cpp-python): the default CPU engine, with optional LoRA adapter."""

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from core.llm.backends import context_reuse
from core.llm.backends.base_backend import Completion, Sampling
from core.llm.backends.session_states import SessionStates
from core.llm.backends.turns import Turnstile
from core.llm.packaged_model import packaged_model

log = logging.getLogger(__name__)

_PREFILL_STEP = 32  # tokens a prefill evaluates in one turn on the CPU


@dataclass
class _Engine:
    """One model instance (a slot): its context, its chat template, and the states its sessions left (shared by
    the slots of one model)."""

    llama: Llama
    chat: Jinja2ChatFormatter
    states: SessionStates
    can_cut: bool
    busy: threading.Lock = field(default_factory=threading.Lock)

    def prompt(self, messages: list[dict]) -> tuple[list[int], list[str]]:
        """The prompt's tokens as the model's own chat template lays the messages out, and its stop strings."""
        formatted = self.chat(messages=messages)
        tokens = self.llama.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)
        stop = formatted.stop or []
        return tokens, [stop] if isinstance(stop, str) else list(stop)

    def start_from_best(self, prompt: list[int]) -> int:
        """Bring the context to the most of `prompt` that it, or a session's kept state, already holds (after
        cutting out history the prompt dropped); the number of prompt tokens not to evaluate again."""
        llama = self.llama
        best = context_reuse.reuse(llama.input_ids[: llama.n_tokens], prompt, self.can_cut)
        source = None
        for state in self.states.states():
            candidate = context_reuse.reuse(state.input_ids[: state.n_tokens], prompt, self.can_cut)
            if candidate.tokens > best.tokens:
                best, source = candidate, state
        if source is not None:
            llama.load_state(source)
        if best.cuts:
            context_reuse.cut(llama, best)
        return best.tokens


class LlamaCppBackend:
    """`slots` generations at once, each in its own context, taking turns on the CPU token by token
    (core/llm/backends/turns.py): the first `leading_tokens` of a reply go ahead of other replies' tails."""

    def __init__(self, model_path: str = "", lora_path: str = "", context_tokens: int = 2048, threads: int = 1,
                 prefix_cache_mb: int = 256, slots: int = 4, leading_tokens: int = 24):
        self._path = Path(model_path) if model_path else packaged_model()
        self._lora = lora_path
        self._threads = threads
        self._cache_bytes = prefix_cache_mb * 1024 * 1024
        self._slots = slots
        self.leading_tokens = leading_tokens
        self.context_tokens = context_tokens
        self.name = self._path.name.removesuffix(".gguf")
        self._turns = Turnstile()
        # The slot freed last is taken first: its live context is most likely the next turn's history (no state to
        # load), and a lone conversation keeps touching one context's memory instead of filling every slot's.
        self._free: queue.LifoQueue[_Engine] = queue.LifoQueue()
        self._base: _Engine | None = None
        # Avatars' own LoRA adapters: one more model instance (one slot) each, least recently used dropped first.
        self._adapted: OrderedDict[str, _Engine] = OrderedDict()
        self._adapting = threading.Lock()
        self.max_adapters = 3

    def _open(self, lora_path: str, states: SessionStates) -> _Engine:
        llama = Llama(
            model_path=str(self._path),
            lora_path=lora_path or None,
            n_ctx=self.context_tokens,
            n_threads=self._threads,
            n_threads_batch=self._threads,
            verbose=False,
        )
        # Sampling happens inside llama.cpp (logits_all off, no log-probabilities): the Python-side score rows
        # are never read, but restoring a state would fill one per token (up to 100 MB a slot). One row does.
        llama.scores = np.zeros((1, llama.n_vocab()), dtype=np.single)
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{self._path} carries no chat template (tokenizer.chat_template): use a chat model's GGUF")
        eos, bos = llama.token_eos(), llama.token_bos()
        chat = Jinja2ChatFormatter(
            template=template,
            eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
        )
        return _Engine(llama, chat, states, context_reuse.can_cut(llama))

    @contextmanager
    def _engine(self, adapter: str) -> Iterator[_Engine]:
        """A free slot of the base model (waiting for one), or the adapter's own instance (waiting its turn)."""
        if not adapter:
            engine = self._free.get()
            try:
                yield engine
            finally:
                self._free.put(engine)
            return
        with self._adapting:
            if adapter not in self._adapted:
                self._adapted[adapter] = self._open(adapter, SessionStates(self._cache_bytes))
                log.info("loaded LoRA adapter %s", adapter)
                while len(self._adapted) > self.max_adapters:
                    self._adapted.popitem(last=False)
            self._adapted.move_to_end(adapter)
            engine = self._adapted[adapter]
        with engine.busy:
            yield engine

    def load(self) -> None:
        states = SessionStates(self._cache_bytes)
        engines = [self._open(self._lora, states) for _ in range(self._slots)]
        for engine in engines:
            self._free.put(engine)
        self._base = engines[0]
        warm = Completion()
        for _ in self.stream([{"role": "user", "content": "Hi"}], Sampling(4, 0.0, 1.0, 1.0), warm):
            pass
        log.info("loaded %s (context %d tokens, %d slots)", self.name, self.context_tokens, self._slots)

    def count_tokens(self, text: str) -> int:
        return len(self._base.llama.tokenize(text.encode(), add_bos=False, special=True))

    def prefill(self, messages: list[dict], adapter: str = "", session: str = "") -> None:
        """Evaluate `messages` (the session's next prompt up to its next question) while the engine is idle, a
        few tokens a turn, so that a new reply's first tokens never wait long behind it; the state is kept under
        the session. A reply's own tokens do not always serve: the history gives the reply back as text, which is
        tokenized anew, and where that splits a word otherwise than the model wrote it (2 of 8 turns of one
        conversation here), the next prompt's reuse stopped there and the rest of the reply (80-100 tokens, 0.4-1.2
        s on a busy core) was evaluated again before the first token."""
        with self._engine(adapter) as engine:
            with self._turns.turn(leading=False):
                prompt, _ = engine.prompt(messages)
                if len(prompt) >= self.context_tokens:
                    return
                done = engine.start_from_best(prompt)
                if done >= len(prompt):
                    return
                engine.llama.n_tokens = done
            for start in range(done, len(prompt), _PREFILL_STEP):
                with self._turns.turn(leading=False):
                    engine.llama.eval(prompt[start : start + _PREFILL_STEP])
            if self._cache_bytes:
                with self._turns.turn(leading=False):
                    engine.states.put(session, engine.llama.save_state())

    def stream(self, messages: list[dict], sampling: Sampling, completion: Completion, adapter: str = "",
               session: str = "") -> Iterator[str]:
        asked = time.monotonic()
        with self._engine(adapter) as engine:
            with self._turns.turn(leading=True):
                completion.queued_s = time.monotonic() - asked
                prompt, stop = engine.prompt(messages)
                completion.prompt_tokens = len(prompt)
                completion.cached_prompt_tokens = min(engine.start_from_best(prompt), len(prompt))
                chunks = engine.llama.create_completion(
                    prompt=prompt,
                    stream=True,
                    max_tokens=sampling.max_tokens,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    repeat_penalty=sampling.repetition_penalty,
                    stop=stop + list(sampling.stop),
                    seed=sampling.seed or None,
                )
                chunk = next(chunks, None)
            try:
                while chunk is not None and not completion.cancel.is_set():
                    choice = chunk["choices"][0]
                    if choice["text"]:
                        completion.completion_tokens += 1
                        yield choice["text"]
                    if choice.get("finish_reason"):
                        completion.finish_reason = choice["finish_reason"]
                    with self._turns.turn(leading=completion.completion_tokens < self.leading_tokens):
                        chunk = next(chunks, None)
                if completion.cancel.is_set():
                    completion.finish_reason = "cancelled"
            finally:
                with self._turns.turn(leading=False):
                    chunks.close()
                    if self._cache_bytes:
                        engine.states.put(session, engine.llama.save_state())
