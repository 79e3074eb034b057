"""Whether the speaker has finished, from the words so far: a small chat model reads them as a user's message.

SmolLM2-135M-Instruct (the text engine's packaged GGUF, run here with llama.cpp on one thread) is shown the words
as the start of a user's message; the probability that the next token ends the sentence (".", "?", "!") or the
message is how complete they read. "What is your name" reads complete (~0.5), "I would like to", "can you tell
me about" or "my favourite colour is" do not (~0.001 and less): a person who stopped there is thinking, not done.

Tried first and left out: Smart Turn v3 (the audio model in the pipecat-ai wheel) took 300-440 ms a judgement on
this project's 2-core machine, and its verdicts on the test voices and the two human recordings were near chance.
"""

import re
import threading
import time
from pathlib import Path

import llama_cpp
import numpy as np

from core.llm.packaged_model import packaged_model

_SYSTEM = "You are a helpful assistant."
_CLOSING = re.compile(r"[\s.?!。？！]+$")
# A transcript that trails off: the recogniser heard the voice stay up ("I would like to...", "my favourite is,")
TRAILING_OFF = re.compile(r"(\.\.\.|…|,)\s*$")


class TurnTextModel:
    """P(the words are a whole message) for the words of a turn so far."""

    def __init__(self, path: Path | None = None, threads: int = 1):
        self.path = path or packaged_model()
        self._llm = llama_cpp.Llama(model_path=str(self.path), n_ctx=512, n_threads=threads, n_threads_batch=threads, n_batch=512,
                          verbose=False)
        enders = [self._llm.tokenize(mark.encode(), add_bos=False)[0] for mark in (".", "?", "!")]
        self._enders = sorted({*enders, *self._tokens("<|im_end|>")})
        self._prefix = self._tokens(f"<|im_start|>system\n{_SYSTEM}<|im_end|>\n<|im_start|>user\n")
        self.last_ms = 0.0
        self._lock = threading.Lock()  # one context: the streams of a server take turns

    def _tokens(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode(), add_bos=False, special=True)

    def complete_probability(self, text: str) -> float:
        words = _CLOSING.sub("", text.strip())
        if not words:
            return 0.0
        tokens = self._prefix + self._tokens(words[-400:])
        with self._lock:
            started = time.perf_counter()
            self._eval(tokens)
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._llm.ctx, -1),
                                           shape=(self._llm.n_vocab(),)).astype(np.float64)
            self.last_ms = (time.perf_counter() - started) * 1000
        probabilities = np.exp(logits - logits.max())
        return float(probabilities[self._enders].sum() / probabilities.sum())

    def _eval(self, tokens: list[int]) -> None:
        """Run `tokens` through the model, reusing what the last call left in its cache of the same beginning (the
        prompt's, and a turn's words judged before at an earlier pause)."""
        done = self._llm.input_ids[: self._llm.n_tokens]
        # the last token is always run: its logits are the answer
        self._llm.n_tokens = llama_cpp.Llama.longest_token_prefix(done, tokens[:-1])
        self._llm.eval(tokens[self._llm.n_tokens :])
