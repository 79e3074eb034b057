"""python -m services.sda — the speech-driven animation service."""

from services.common.server import run
from services.sda.config import SdaSettings
from services.sda.server import SdaService

if __name__ == "__main__":
    run(SdaService, SdaSettings())
