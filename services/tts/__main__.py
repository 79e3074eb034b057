"""python -m services.tts — the streaming speech synthesis service."""

from services.common.server import run
from services.tts.config import TtsSettings
from services.tts.server import TtsService

if __name__ == "__main__":
    run(TtsService, TtsSettings())
