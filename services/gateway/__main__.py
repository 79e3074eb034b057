"""python -m services.gateway — the browser-facing gateway (HTTP + WebSocket)."""

import socket

import uvicorn

from services.common.logs import setup_logging
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.gateway.draining import DrainingServer

if __name__ == "__main__":
    settings = GatewaySettings()
    setup_logging("gateway", settings.log_level)
    try:
        app = create_app(settings)
    except ValueError as err:  # settings that would leave it open or unusable: say which, start nothing
        raise SystemExit(f"gateway: {err}") from None
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    # One server on two sockets: the public port, and the operators' (metrics, readiness's details).
    sockets = [config.bind_socket()]
    if settings.metrics_port:
        sockets.append(socket.create_server((settings.host, settings.metrics_port)))
    DrainingServer(config, app.state.drain, settings.drain_grace_s, settings.drain_notice_s).run(sockets=sockets)
