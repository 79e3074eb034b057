"""python -m services.llm — the streaming text engine."""

from services.common.heap import map_large_buffers
from services.common.server import run
from services.llm.config import LlmSettings
from services.llm.server import LlmService

if __name__ == "__main__":
    map_large_buffers()  # per-session llama.cpp states, replaced every turn: keep the heap from fragmenting
    run(LlmService, LlmSettings())
