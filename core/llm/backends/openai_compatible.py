"""Any OpenAI-compatible chat server (vLLM, TGI, llama.cpp's server) by URL: the scale-out path on GPUs."""

import json
import logging
import time
from collections.abc import Iterator

import httpx

from core.llm.backends.base_backend import Completion, Sampling

log = logging.getLogger(__name__)


class OpenAICompatibleBackend:
    def __init__(self, base_url: str, model: str, api_key: str = "", context_tokens: int = 4096, timeout_s: float = 60,
                 startup_timeout_s: float = 600):
        self._startup_timeout_s = startup_timeout_s
        self._url = base_url.rstrip("/")
        self._model = model
        self.name = model
        self.context_tokens = context_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self._url, headers=headers, timeout=timeout_s)

    def load(self) -> None:
        models = self._wait_for_server()
        names = [m["id"] for m in models.get("data", [])]
        if not self._model:
            self._model = self.name = names[0]
        log.info("using %s at %s (server lists %s)", self._model, self._url, names)
        for _ in self.stream([{"role": "user", "content": "Hi"}], Sampling(2, 0.0, 1.0, 1.0), Completion()):
            pass

    def _wait_for_server(self) -> dict:
        """The server's model list, waiting while it starts (a GPU server can take minutes to load its model)."""
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            try:
                return self._client.get("/models").raise_for_status().json()
            except httpx.TransportError as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no OpenAI-compatible server answered at {self._url}") from err
                log.info("waiting for %s: %s", self._url, err)
                time.sleep(1.0)

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1  # the server tokenizes; a conservative estimate is enough for trimming

    def prefill(self, messages: list[dict], adapter: str = "", session: str = "") -> None:
        """The server keeps (or not) its own cache: nothing to do ahead."""

    def stream(self, messages: list[dict], sampling: Sampling, completion: Completion, adapter: str = "",
               session: str = "") -> Iterator[str]:
        # Adapters live on the serving side here (e.g. vLLM's --lora-modules, selected by model name).
        body = {
            "model": self._model,
            "messages": messages,
            "stream": True,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "frequency_penalty": max(0.0, (sampling.repetition_penalty - 1.0) * 2),
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed:
            body["seed"] = sampling.seed
        with self._client.stream("POST", "/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if completion.cancel.is_set():
                    completion.finish_reason = "cancelled"
                    return  # closing the response ends the server's generation
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                choice = json.loads(data)["choices"][0]
                delta = choice.get("delta", {}).get("content")
                if delta:
                    completion.completion_tokens += 1
                    yield delta
                if choice.get("finish_reason"):
                    completion.finish_reason = choice["finish_reason"]
