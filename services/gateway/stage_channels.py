"""gRPC channels to the four stages, shared by every session of this gateway process."""

import asyncio
import contextlib
import json

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
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def target_host_port(address: str) -> tuple[str, int]:
    """The host and port of a gRPC target: `host:port`, `dns:///host:port` or `ipv4:host:port`."""
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        address = address.removeprefix(scheme)
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class StageClients:
    def __init__(self, settings: GatewaySettings):
        self._reconnect_s = settings.stage_reconnect_s
        self.addresses = {
            "asr": settings.asr_address,
            "llm": settings.llm_address,
            "tts": settings.tts_address,
            "sda": settings.sda_address,
        }
        self._channels = {
            name: grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) for name, address in self.addresses.items()
        }
        self.asr = asr_pb2_grpc.AsrServiceStub(self._channels["asr"])
        self.llm = llm_pb2_grpc.LlmServiceStub(self._channels["llm"])
        self.tts = tts_pb2_grpc.TtsServiceStub(self._channels["tts"])
        self.sda = sda_pb2_grpc.SdaServiceStub(self._channels["sda"])

    async def connected(self, stage: str) -> None:
        """Before a call: a stage whose connection is down (a replica restarting, maybe at a new address) gets up
        to GATEWAY_STAGE_RECONNECT_S to come back, instead of the call failing at once; one that stays down fails
        the call as before."""
        channel = self._channels[stage]
        if channel.get_state(try_to_connect=True) != grpc.ChannelConnectivity.READY:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(channel.channel_ready(), self._reconnect_s)

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
        for channel in self._channels.values():
            await channel.close()
