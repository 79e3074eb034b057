"""gRPC channels to the four stages, shared by every session of this gateway process."""

import asyncio
import contextlib
import json
import time

import grpc
from avatar.asr.v1 import asr_pb2_grpc
from avatar.llm.v1 import llm_pb2_grpc
from avatar.sda.v1 import sda_pb2_grpc
from avatar.tts.v1 import tts_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gateway.config import GatewaySettings

# With dns:/// addresses of headless Services, round robin spreads new streams over every pod, and only over pods
# whose grpc.health.v1 says SERVING (a replica still loading or draining gets no new stream). A new call that
# meets UNAVAILABLE (a replica going away) or RESOURCE_EXHAUSTED (a full one) is retried on another, before its
# first answer only, so nothing a user heard is replayed.
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
    "methodConfig": [{
        "name": [{}],
        "retryPolicy": {
            "maxAttempts": 3,
            "initialBackoff": "0.1s",
            "maxBackoff": "1s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
        },
    }],
}
CHANNEL_OPTIONS = [
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    # Keepalive finds a connection that died silently (a node gone, a NAT dropping it) within about 40 s.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # A replica that restarts comes back at a new address (a new pod, a new container): when a connection fails
    # the name is resolved again within a second (gRPC's default waits 30 s), and reconnects back off briefly.
    ("grpc.dns_min_time_between_resolutions_ms", 1000),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # gRPC reads this one as the time a connection attempt is given (its minimum connect timeout), not as a backoff:
    # at 200 ms, attempts on a busy machine were cut before they could finish ("tcp handshaker shutdown").
    ("grpc.min_reconnect_backoff_ms", 5000),
]


def target_host_port(address: str) -> tuple[str, int]:
    """The host and port of a gRPC target: `host:port`, `dns:///host:port` or `ipv4:host:port`."""
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        address = address.removeprefix(scheme)
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class StageClients:
    """One channel per stage, renewed when its stage went away: a container restarted by its engine comes back at a
    new address, and while it was down its name did not resolve; gRPC's resolver backs off after each failed lookup
    (1 s, 1.6 s, 2.6 s ... up to 2 min), so an old channel can take tens of seconds to look the name up again after
    the stage is back. A new channel looks it up at once."""

    # A stage that stays down gets a new channel this often at most: twice within one call's wait (a stage back just
    # after a renewal is found within that wait), never more than every 2 s or less than every 0.2 s.
    _RENEW_MIN_S, _RENEW_MAX_S = 0.2, 2.0
    _CLOSE_GRACE_S = 120.0  # calls still open on a channel that was replaced (a draining replica's) get this long

    def __init__(self, settings: GatewaySettings):
        self._reconnect_s = settings.stage_reconnect_s
        self._renew_every_s = min(self._RENEW_MAX_S, max(self._RENEW_MIN_S, self._reconnect_s / 2))
        self.addresses = {
            "asr": settings.asr_address,
            "llm": settings.llm_address,
            "tts": settings.tts_address,
            "sda": settings.sda_address,
        }
        self._channels = {name: self._open(address) for name, address in self.addresses.items()}
        self._renewed = dict.fromkeys(self.addresses, float("-inf"))
        self._retired: dict[asyncio.Task, grpc.aio.Channel] = {}  # replaced channels, closing after their grace

    @staticmethod
    def _open(address: str) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)

    @property
    def asr(self) -> asr_pb2_grpc.AsrServiceStub:
        return asr_pb2_grpc.AsrServiceStub(self._channels["asr"])

    @property
    def llm(self) -> llm_pb2_grpc.LlmServiceStub:
        return llm_pb2_grpc.LlmServiceStub(self._channels["llm"])

    @property
    def tts(self) -> tts_pb2_grpc.TtsServiceStub:
        return tts_pb2_grpc.TtsServiceStub(self._channels["tts"])

    @property
    def sda(self) -> sda_pb2_grpc.SdaServiceStub:
        return sda_pb2_grpc.SdaServiceStub(self._channels["sda"])

    async def connected(self, stage: str, wait_s: float | None = None) -> None:
        """Before a call: a stage whose connection is down (a replica restarting, maybe at a new address) gets up
        to `wait_s` (GATEWAY_STAGE_RECONNECT_S) to come back, on a new channel once the old one has failed to
        connect, instead of the call failing at once; one that stays down fails the call as before."""
        channel = self._channels[stage]
        deadline = time.monotonic() + (self._reconnect_s if wait_s is None else wait_s)
        while (state := channel.get_state(try_to_connect=True)) != grpc.ChannelConnectivity.READY:
            failed = state == grpc.ChannelConnectivity.TRANSIENT_FAILURE
            if failed and self._renew_in(stage) <= 0:
                channel = self._renew(stage)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return
            wait = min(left, self._renew_in(stage)) if failed else left  # wakes to renew a channel still failing
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(channel.wait_for_state_change(state), wait)

    def _renew_in(self, stage: str) -> float:
        """Seconds until the stage's channel may be renewed (0 or less: now)."""
        return self._renewed[stage] + self._renew_every_s - time.monotonic()

    def _renew(self, stage: str) -> grpc.aio.Channel:
        old = self._channels[stage]
        self._channels[stage] = self._open(self.addresses[stage])
        self._renewed[stage] = time.monotonic()
        closing = asyncio.create_task(old.close(grace=self._CLOSE_GRACE_S))
        self._retired[closing] = old
        closing.add_done_callback(self._retired.pop)
        return self._channels[stage]

    async def status(self, stage: str, timeout: float = 1.0) -> str:
        """SERVING, NOT_SERVING or UNREACHABLE, from the stage's grpc.health.v1."""
        stub = health_pb2_grpc.HealthStub(self._channels[stage])
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def statuses(self, timeout: float = 0.5) -> dict[str, str]:
        """Every stage's status, asked at once: a slow stage costs readiness at most `timeout`."""
        states = await asyncio.gather(*(self.status(stage, timeout) for stage in self.addresses))
        return dict(zip(self.addresses, states))

    async def unresolved(self) -> list[str]:
        """The stages whose host name resolves to no address (a broken container network or a wrong name)."""
        async def resolves(address: str) -> bool:
            host, port = target_host_port(address)
            try:
                await asyncio.get_running_loop().getaddrinfo(host, port)
            except OSError:
                return False
            return True

        found = await asyncio.gather(*(resolves(address) for address in self.addresses.values()))
        return [stage for stage, ok in zip(self.addresses, found) if not ok]

    async def close(self) -> None:
        for channel in [*self._channels.values(), *self._retired.values()]:
            await channel.close()
