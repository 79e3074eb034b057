"""The gateway's channel to a stage with several replicas (a headless Service resolves to every pod): new calls
go only to replicas whose grpc.health.v1 says SERVING, and a call refused by a full or dying replica is retried
on another — so neither fails a turn. Real gRPC servers in this process, one address list for the channel."""

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.gateway.stage_channels import CHANNEL_OPTIONS

pytestmark = pytest.mark.unit

METHOD = "/test.Replica/Who"


async def start_replica(name: str, serving: bool, refuse_with: grpc.StatusCode | None = None):
    """A server answering METHOD with its name (or refusing with `refuse_with`), with its health set."""

    async def who(request: bytes, context) -> bytes:
        if refuse_with is not None:
            await context.abort(refuse_with, f"{name} is full")
        return name.encode()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "test.Replica", {"Who": grpc.unary_unary_rpc_method_handler(who)})])
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    state = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    await servicer.set("", state)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def answers(ports: list[int], calls: int = 12) -> list[str]:
    target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        who = channel.unary_unary(METHOD)
        return [(await who(b"", timeout=5, wait_for_ready=True)).decode() for _ in range(calls)]


async def test_new_calls_skip_a_replica_that_is_not_serving():
    loading, a = await start_replica("loading", serving=False)
    ready, b = await start_replica("ready", serving=True)
    try:
        assert set(await answers([a, b])) == {"ready"}
    finally:
        await loading.stop(0)
        await ready.stop(0)


async def test_calls_spread_over_serving_replicas():
    one, a = await start_replica("one", serving=True)
    two, b = await start_replica("two", serving=True)
    try:
        assert set(await answers([a, b])) == {"one", "two"}
    finally:
        await one.stop(0)
        await two.stop(0)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
async def test_a_call_refused_by_one_replica_is_retried_on_another(code):
    full, a = await start_replica("full", serving=True, refuse_with=code)
    ready, b = await start_replica("ready", serving=True)
    try:
        assert set(await answers([a, b])) == {"ready"}  # every call succeeds, none from the full replica
    finally:
        await full.stop(0)
        await ready.stop(0)
