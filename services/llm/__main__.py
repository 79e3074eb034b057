"""python -m services.llm — the streaming text engine."""

from services.common.server import run
from services.llm.config import LlmSettings
from services.llm.server import LlmService

if __name__ == "__main__":
    run(LlmService, LlmSettings())
