"""Evaluated prompt states kept across requests, so each session's next turn starts from its own prefix.

One llama.cpp context serves every session; on its own it only reuses the prefix of the request it ran last, so
two sessions taking turns would each evaluate their whole history again. This cache keeps the state after each
reply (LRU within a byte budget) and hands back the one sharing the longest prefix with a new prompt.
"""

from collections.abc import Sequence

import numpy as np
from llama_cpp import Llama, LlamaRAMCache, LlamaState


class SessionPrefixCache(LlamaRAMCache):
    def __init__(self, capacity_bytes: int):
        super().__init__(capacity_bytes)
        self.last_prompt: list[int] = []
        self.last_cached_tokens = 0  # the longest prefix of the last prompt found in the cache

    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        self.last_prompt, self.last_cached_tokens = list(key), 0
        state = super().__getitem__(key)
        self.last_cached_tokens = Llama.longest_token_prefix(state.input_ids.tolist(), list(key))
        return state

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        # Sampling happens inside llama.cpp (logits_all is off): the saved score rows are never read, and they
        # would cost ~100 MB a state (512 rows of the vocabulary) outside the byte budget. One row broadcasts back.
        value.scores = np.zeros((1, value.scores.shape[1]), dtype=np.single)
        super().__setitem__(key, value)
