"""The FastAPI app: the browser WebSocket, health and readiness, Prometheus metrics."""

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Response, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from redis.exceptions import RedisError

from core.avatar_jobs import AvatarJobs
from services.common.tracing import setup_tracing, shutdown_tracing
from services.gateway import admin_api, avatar_api, openai_api, rest_errors
from services.gateway.access import Access
from services.gateway.admission import Admission
from services.gateway.body_limit import BodyLimit
from services.gateway.config import GatewaySettings
from services.gateway.draining import Drain
from services.gateway.grpc_stages import grpc_stages
from services.gateway.rest_auth import requires
from services.gateway.rest_limits import RateLimiter
from services.gateway.session_store import SessionStore
from services.gateway.socket_limits import SocketLimits
from services.gateway.stage_clients import StageClients
from services.gateway.transport import WebSocketTransport

SESSIONS = Counter("avatar_gateway_sessions_total", "WebSocket sessions opened")
OPEN_SESSIONS = Gauge("avatar_gateway_sessions_open", "WebSocket sessions connected now")
TASKS = Gauge("avatar_gateway_asyncio_tasks", "asyncio tasks alive in the gateway (a leak shows as growth)")
WEB_APP = Path(__file__).parent / "web" / "dist"


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.settings = settings
        app.state.store = SessionStore(settings.redis_url, settings.session_ttl_s, settings.history_stored)
        app.state.clients = StageClients(settings)
        app.state.stages = grpc_stages(app.state.clients, settings)
        app.state.jobs = AvatarJobs.from_url(settings.redis_url)
        setup_tracing("avatar.gateway")
        yield
        await app.state.clients.close()
        await app.state.store.close()
        await app.state.jobs.close()
        shutdown_tracing()

    app = FastAPI(title="Avatar gateway", version="1", lifespan=lifespan)
    app.state.access = Access(settings)
    app.state.sockets = SocketLimits(settings.max_sockets, settings.max_sockets_per_address)
    app.state.rest_rate = RateLimiter(settings.rest_rate_per_min, settings.rest_burst)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.state.drain = Drain()
    app.state.admission = Admission(settings.max_sessions)
    rest_errors.install(app)
    app.include_router(avatar_api.router, dependencies=[Depends(requires("converse", "make_avatars"))])
    app.include_router(openai_api.router, dependencies=[Depends(requires("rest"))])
    app.include_router(admin_api.router, dependencies=[Depends(requires("admin"))])

    @app.get("/healthz")
    async def healthz():
        """Liveness: the gateway process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        """Readiness: Redis answers, every stage's name resolves, the gateway is not draining and has room for
        another conversation; lists each stage's health (a stage down degrades turns, not the gateway, but a name
        that resolves nowhere is a broken network: no turn could ever reach it)."""
        try:
            redis = "ok" if await app.state.store.ping() else "unreachable"
        except (OSError, RedisError) as err:  # down, refusing (protected mode, a wrong password), or not Redis
            redis = f"unreachable: {err}"[:200]
        admission = app.state.admission
        unresolved = await app.state.clients.unresolved()
        body = {"redis": redis, "stages": await app.state.clients.statuses(), "unresolved": unresolved,
                "draining": app.state.drain.draining,
                "sessions": {"admitted": admission.admitted, "capacity": admission.max_sessions, "full": admission.full}}
        ready = redis == "ok" and not unresolved and not app.state.drain.draining and not admission.full
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics():
        TASKS.set(len(asyncio.all_tasks()))
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
