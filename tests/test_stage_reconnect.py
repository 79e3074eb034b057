"""A stage that goes away and comes back: the gateway's next call waits a bounded time while it is down, and reaches
it at once when it is back. A container restarted by its engine comes back at a new address, and while it was
down its name did not resolve; gRPC's resolver backs off after each failed lookup, so a channel kept from before
could take tens of seconds to find it. Here the stage's name is served by a small DNS server in this process that
answers only while the stage is up, as the container engine's does; the stages are real gRPC servers."""

import asyncio
import struct
import time

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.gateway.config import GatewaySettings
from services.gateway.stage_channels import StageClients
from services.runner.redis_server import free_port

pytestmark = pytest.mark.unit

RECONNECT_S = 1.0
# After its first failed lookup gRPC's resolver asks again with growing gaps (seen here: 1.2, 1.8, 2.4, 3.4, 5.8 s,
# then about 9 s): a stage back 18-20 s after it went away falls in that last gap, where a channel kept from before
# would not look for it for seconds more.
DOWN_S = 18.0
NAME = "sda.stage.test"


class StageNames(asyncio.DatagramProtocol):
    """A DNS server for one name: its A record while `up`, NXDOMAIN while not (every other question: no record)."""

    def __init__(self):
        self.up = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data: bytes, addr):
        ident, = struct.unpack("!H", data[:2])
        end = data.index(b"\0", 12) + 1
        labels, at = [], 12
        while data[at]:
            labels.append(data[at + 1:at + 1 + data[at]].decode())
            at += 1 + data[at]
        qtype, = struct.unpack("!H", data[end:end + 2])
        question = data[12:end + 4]
        ours = ".".join(labels).lower() == NAME
        answers = b""
        if ours and self.up and qtype == 1:  # A
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 1, 4) + bytes([127, 0, 0, 1])
        rcode = 3 if ours and not self.up else 0  # NXDOMAIN
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, 1 if answers else 0, 0, 0)
        self.transport.sendto(header + question + answers, addr)


async def start_stage(port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


async def test_a_stage_back_at_a_name_that_stopped_resolving_is_reached_by_the_next_call():
    loop = asyncio.get_running_loop()
    names = StageNames()
    transport, _ = await loop.create_datagram_endpoint(lambda: names, local_addr=("127.0.0.1", 0))
    dns_port = transport.get_extra_info("sockname")[1]
    port = free_port()
    clients = StageClients(GatewaySettings(sda_address=f"dns://127.0.0.1:{dns_port}/{NAME}:{port}",
                                           stage_reconnect_s=RECONNECT_S))
    names.up, server = True, await start_stage(port)
    try:
        await clients.connected("sda")
        assert await clients.status("sda") == "SERVING"

        names.up = False
        await server.stop(0)
        down = time.monotonic()
        while time.monotonic() - down < DOWN_S:  # calls while the stage is down: each waits a bounded time
            await asyncio.sleep(1.0)
            started = time.monotonic()
            await clients.connected("sda")
            assert time.monotonic() - started < RECONNECT_S + 0.5, "a call waited longer than the reconnect time"
            assert await clients.status("sda") == "UNREACHABLE"

        # The stage comes back 0.6 s after a call found it down, while the channel that call renewed backs off its
        # failed lookup (there, before each call woke to renew its channel, the next call waited 0.85-0.9 s of 1 s).
        await asyncio.sleep(0.6)

        names.up, server = True, await start_stage(port)
        started = time.monotonic()
        await clients.connected("sda")
        assert await clients.status("sda") == "SERVING", "the stage was back, yet the call could not reach it"
        assert time.monotonic() - started < RECONNECT_S
    finally:
        await server.stop(0)
        await clients.close()
        transport.close()
