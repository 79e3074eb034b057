"""How much of a new prompt an evaluated llama.cpp context already holds, including after history was dropped.

A prompt keeps the conversation's history within a budget by dropping its oldest messages in blocks
(services/llm/prompt.py): the new prompt is then the previous one with a span cut out after the system message.
A prefix match alone reuses only the system message there, and the whole kept history is evaluated again before
the first reply token (about two seconds for 800 tokens on two cores, every few turns of a long conversation).
Instead the span is removed from the KV cache and what follows it is moved back (llama.cpp's sequence shift
re-rotates the keys' positions), so only the new turn is evaluated. The kept tokens were computed while the
dropped ones were in view; llama.cpp's own server makes the same trade when it shifts a full context.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp
import numpy as np
from llama_cpp import Llama

MIN_TAIL = 32  # tokens the prompt's continuation must share with what is held to count as the same history


@dataclass(frozen=True)
class Reuse:
    """What is held is `held[:keep] + held[start:start + tail]` of the prompt: a prefix, then (after a cut) a
    tail. No cut: start == keep and tail == 0."""

    keep: int
    start: int
    tail: int

    @property
    def tokens(self) -> int:
        return self.keep + self.tail

    @property
    def cuts(self) -> bool:
        return self.tail > 0


def reuse(held: Sequence[int], prompt: Sequence[int], cutting: bool = True) -> Reuse:
    """The most of `prompt` that `held` (an evaluated context's tokens) can serve: its common prefix, then (where
    `cutting`) the longest run of the prompt's continuation found further on in `held`."""
    held, prompt = list(held), list(prompt)
    keep = Llama.longest_token_prefix(held, prompt)
    best = Reuse(keep, keep, 0)
    rest = prompt[keep:]
    if not cutting or len(rest) < MIN_TAIL or len(held) - keep <= MIN_TAIL:
        return best
    tokens = np.asarray(held)
    for start in np.flatnonzero(tokens[keep + 1 : len(held) - MIN_TAIL + 1] == rest[0]) + keep + 1:
        if held[start : start + MIN_TAIL] == rest[:MIN_TAIL]:
            tail = Llama.longest_token_prefix(held[start:], rest)
            if tail > best.tail:
                best = Reuse(keep, int(start), tail)
    return best


def can_cut(llama: Llama) -> bool:
    """Whether the model's KV cache can move positions (RoPE models can; some recurrent ones cannot)."""
    memory = llama._ctx.memory
    return memory is not None and bool(llama_cpp.llama_memory_can_shift(memory))


def cut(llama: Llama, plan: Reuse) -> None:
    """Make the live context hold `plan`'s tokens: drop what follows the tail, remove the span between the prefix
    and the tail, and move the tail back to close the gap."""
    ctx, end = llama._ctx, plan.start + plan.tail
    held = llama.input_ids[: llama.n_tokens].copy()
    ctx.kv_cache_seq_rm(0, end, -1)
    ctx.kv_cache_seq_rm(0, plan.keep, plan.start)
    ctx.kv_cache_seq_shift(0, plan.start, end, plan.keep - plan.start)
    kept = np.concatenate([held[: plan.keep], held[plan.start : end]])
    llama.input_ids[: len(kept)] = kept
    llama.n_tokens = len(kept)
