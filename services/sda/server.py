"""The SDA gRPC service. It reports NOT_SERVING until a trained generator checkpoint exists (issue: SDA model)."""

from pathlib import Path

import grpc

from avatar.sda.v1 import sda_pb2, sda_pb2_grpc
from services.sda.config import SdaSettings


class SdaService(sda_pb2_grpc.SdaServiceServicer):
    service_name = sda_pb2.DESCRIPTOR.services_by_name["SdaService"].full_name

    def __init__(self, settings: SdaSettings):
        self._settings = settings

    def add_to_server(self, server: grpc.aio.Server) -> None:
        sda_pb2_grpc.add_SdaServiceServicer_to_server(self, server)

    def load(self) -> None:
        checkpoint = Path(self._settings.checkpoint_path)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"no SDA generator checkpoint at {checkpoint}; this stage stays NOT_SERVING")
        raise NotImplementedError("the SDA generator is not part of this build yet")
