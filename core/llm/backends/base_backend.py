"""The one small interface every text-engine backend implements."""

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float
    top_p: float
    repetition_penalty: float
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class Completion:
    """Filled in by the backend as it streams: why it stopped and how many tokens it used."""

    finish_reason: str = "stop"  # stop | length | stop_sequence
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # of prompt_tokens, how many were not evaluated again
    completion_tokens: int = 0
    queued_s: float = 0.0  # waiting for the engine before the prompt was evaluated
    cancel: threading.Event = field(default_factory=threading.Event)


class LlmBackend(Protocol):
    name: str
    context_tokens: int

    def load(self) -> None:
        """Load the model and generate a few warm-up tokens."""

    def count_tokens(self, text: str) -> int: ...

    def stream(self, messages: list[dict], sampling: Sampling, completion: Completion, adapter: str = "",
               session: str = "") -> Iterator[str]:
        """Yield text deltas of the assistant's reply; stop early once `completion.cancel` is set. `adapter`: an
        avatar's LoRA adapter file to apply, where the backend can (others answer with the base model).
        `session`: whose conversation this is, where the backend keeps state between a session's turns."""

    def prefill(self, messages: list[dict], adapter: str = "", session: str = "") -> None:
        """Evaluate `messages` ahead, as the beginning of `session`'s next prompt, where the backend keeps state
        between turns (others do nothing)."""
