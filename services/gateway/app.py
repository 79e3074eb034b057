"""The FastAPI app: the browser WebSocket, REST, health and readiness; on the operators' port (GATEWAY_METRICS_PORT,
the same server listening on a second socket) Prometheus metrics and readiness's details."""

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request, Response, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from core.avatar_jobs import AvatarJobs
from services.common.tracing import setup_tracing, shutdown_tracing
from services.gateway import admin_api, avatar_api, openai_api, provenance_api, rest_errors
from services.gateway.access import Access
from services.gateway.admission import Admission
from services.gateway.machine_load import MachineLoad
from services.gateway.body_limit import BodyLimit
from services.gateway.config import GatewaySettings
from services.gateway.draining import Drain
from services.gateway.grpc_stages import grpc_stages
from services.gateway.readiness import Readiness
from services.gateway.rest_auth import requires
from services.gateway.rest_limits import RateLimiter
from services.gateway.session_store import SessionStore
from services.gateway.socket_limits import SocketLimits
from services.gateway.stage_channels import StageClients
from services.gateway.transport import WebSocketTransport

SESSIONS = Counter("avatar_gateway_sessions_total", "WebSocket sessions opened")
OPEN_SESSIONS = Gauge("avatar_gateway_sessions_open", "WebSocket sessions connected now")
TASKS = Gauge("avatar_gateway_asyncio_tasks", "asyncio tasks alive in the gateway (a leak shows as growth)")
WEB_APP = Path(__file__).parent / "web" / "dist"


async def watch_machine(machine: MachineLoad, window_s: float = 2.0) -> None:
    while True:
        await asyncio.to_thread(machine.step)
        await asyncio.sleep(window_s)


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.settings = settings
        app.state.store = SessionStore(settings.redis_url, settings.session_ttl_s, settings.history_stored)
        app.state.clients = StageClients(settings)
        app.state.stages = grpc_stages(app.state.clients, settings)
        app.state.jobs = AvatarJobs.from_url(settings.redis_url)
        app.state.provenance = await asyncio.to_thread(provenance_api.Provenance, settings)
        app.state.readiness = Readiness(app.state.store, app.state.clients, app.state.drain, app.state.admission,
                                        settings.redis_outage_grace_s)
        setup_tracing("avatar.gateway")
        watcher = asyncio.create_task(watch_machine(machine)) if machine else None
        yield
        if watcher:
            watcher.cancel()
        await app.state.clients.close()
        await app.state.store.close()
        await app.state.jobs.close()
        shutdown_tracing()

    if settings.metrics_port == settings.port:
        raise ValueError("GATEWAY_METRICS_PORT must differ from GATEWAY_PORT: metrics stay off the public port")
    app = FastAPI(title="Avatar gateway", version="1", lifespan=lifespan)
    app.state.access = Access(settings)
    app.state.sockets = SocketLimits(settings.max_sockets, settings.max_sockets_per_address)
    app.state.rest_rate = RateLimiter(settings.rest_rate_per_min, settings.rest_burst)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.state.drain = Drain()
    machine = MachineLoad(settings.reply_cpu_s, settings.cpu_margin) if settings.predict_capacity else None
    app.state.admission = Admission(settings.max_sessions, settings.learn_capacity, settings.capacity_relax_s,
                                    predicted=machine.sessions if machine else lambda: None)
    rest_errors.install(app)
    app.include_router(avatar_api.router, dependencies=[Depends(requires("converse", "make_avatars"))])
    app.include_router(avatar_api.voices_router, dependencies=[Depends(requires("converse"))])
    app.include_router(openai_api.router, dependencies=[Depends(requires("rest"))])
    app.include_router(provenance_api.router, dependencies=[Depends(requires("rest"))])
    app.include_router(admin_api.router, dependencies=[Depends(requires("admin"))])

    @app.get("/healthz")
    async def healthz():
        """Liveness: the gateway process answers."""
        return {"status": "ok"}

    def on_ops_port(request: Request) -> bool:
        """Whether the request came in on the operators' port (GATEWAY_METRICS_PORT), not the public one."""
        return bool(settings.metrics_port) and request.scope["server"][1] == settings.metrics_port

    @app.get("/readyz")
    async def readyz(request: Request):
        """Readiness (`readiness.py`): 200 or 503; the details only on the operators' port."""
        ready, details = await app.state.readiness.check()
        body = {"ready": ready, **details} if on_ops_port(request) else {"ready": ready}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics(request: Request):
        """Prometheus metrics, on the operators' port only."""
        if not on_ops_port(request):
            raise HTTPException(404, "not here: metrics are served on the gateway's metrics port")
        TASKS.set(len(asyncio.all_tasks()))
        app.state.admission.publish()  # the capacity moves with the machine's load between hellos
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws")
    async def websocket(ws: WebSocket):
        SESSIONS.inc()
        with OPEN_SESSIONS.track_inprogress():
            await WebSocketTransport(ws, app.state.stages, app.state.clients, app.state.store, settings,
                                     app.state.drain, app.state.admission, app.state.access, app.state.sockets).run()

    if WEB_APP.is_dir():
        app.mount("/", StaticFiles(directory=WEB_APP, html=True), name="web")
    else:
        @app.get("/", response_class=HTMLResponse)
        async def no_web_app():
            return "<p>The browser app is not built: run <code>make run</code> (it builds services/gateway/web).</p>"

    return app
