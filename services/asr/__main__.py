"""python -m services.asr — the streaming speech recognition service."""

from services.asr.config import AsrSettings
from services.asr.server import AsrService
from services.common.server import run

if __name__ == "__main__":
    run(AsrService, AsrSettings())
