"""An animation stage on a machine that draws only so many pictures a second: a gRPC proxy in front of the real
one whose frames come out no faster than its drawing allows. The real stage makes the frames ahead; the proxy
"draws" each one as it lets it out: a frame that gets a picture at the stream's picture rate (as the gateway set
it, at that moment) costs 1/`pictures_per_s`, one without passes at once with its picture taken off. What a reply
meets on a slower or loaded machine, where drawing is what a frame costs."""

import asyncio
import time

import grpc
from avatar.sda.v1 import sda_pb2_grpc

from services.runner.redis_server import free_port


class SlowAnimation(sda_pb2_grpc.SdaServiceServicer):
    def __init__(self, target: str, pictures_per_s: float):
        self.port = free_port()
        self._target = target
        self._gap_s = 1 / pictures_per_s
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None

    async def start(self) -> "SlowAnimation":
        self._channel = grpc.aio.insecure_channel(self._target)
        self._server = grpc.aio.server()
        sda_pb2_grpc.add_SdaServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()
        return self

    async def stop(self) -> None:
        await self._server.stop(0)
        await self._channel.close()

    async def ListAvatars(self, request, context):
        return await sda_pb2_grpc.SdaServiceStub(self._channel).ListAvatars(request)

    async def StreamingAnimate(self, request_iterator, context):
        every = 1  # the stream's picture rate, as the gateway last set it

        async def requests():
            nonlocal every
            async for request in request_iterator:
                if request.WhichOneof("request") == "picture_rate":
                    every = request.picture_rate.every
                yield request

        made: asyncio.Queue = asyncio.Queue()

        async def read() -> None:
            try:
                async for response in sda_pb2_grpc.SdaServiceStub(self._channel).StreamingAnimate(requests()):
                    made.put_nowait(response)
            finally:
                made.put_nowait(None)

        reader = asyncio.create_task(read())
        drawn_at, segment = 0.0, -1
        try:
            while (response := await made.get()) is not None:
                frame = response.frame if response.WhichOneof("result") == "frame" else None
                if frame is not None and frame.image:
                    first = frame.segment != segment
                    segment = frame.segment
                    if first or (every >= 0 and frame.index % max(every, 1) == 0):
                        drawn_at = max(time.monotonic(), drawn_at + self._gap_s)
                        await asyncio.sleep(drawn_at - time.monotonic())
                    else:
                        frame.image = b""
                yield response
        finally:
            reader.cancel()
