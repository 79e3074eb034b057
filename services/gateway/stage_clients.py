"""gRPC channels to the four stages, shared by every session of this gateway process."""

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avatar.asr.v1 import asr_pb2_grpc
from avatar.llm.v1 import llm_pb2_grpc
from avatar.sda.v1 import sda_pb2_grpc
from avatar.tts.v1 import tts_pb2_grpc
from services.gateway.config import GatewaySettings


class StageClients:
    def __init__(self, settings: GatewaySettings):
        self.addresses = {
            "asr": settings.asr_address,
            "llm": settings.llm_address,
            "tts": settings.tts_address,
            "sda": settings.sda_address,
        }
        # With dns:/// addresses of headless Services, round robin spreads new streams over every pod.
        # Short reconnect backoff: a stage that restarts is used again within a couple of seconds.
        options = [
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        self._channels = {
            name: grpc.aio.insecure_channel(address, options=options) for name, address in self.addresses.items()
        }
        self.asr = asr_pb2_grpc.AsrServiceStub(self._channels["asr"])
        self.llm = llm_pb2_grpc.LlmServiceStub(self._channels["llm"])
        self.tts = tts_pb2_grpc.TtsServiceStub(self._channels["tts"])
        self.sda = sda_pb2_grpc.SdaServiceStub(self._channels["sda"])

    async def status(self, stage: str, timeout: float = 1.0) -> str:
        """SERVING, NOT_SERVING or UNREACHABLE, from the stage's grpc.health.v1."""
        stub = health_pb2_grpc.HealthStub(self._channels[stage])
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def statuses(self) -> dict[str, str]:
        return {stage: await self.status(stage) for stage in self.addresses}

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
