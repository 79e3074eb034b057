"""python -m services.gateway — the browser-facing gateway (HTTP + WebSocket)."""

import uvicorn

from services.common.logs import setup_logging
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings

if __name__ == "__main__":
    settings = GatewaySettings()
    setup_logging("gateway", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())
