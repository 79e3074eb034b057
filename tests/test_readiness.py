"""The gateway's readiness: a brief Redis outage keeps it in the load balancer, a long one does not."""

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from services.gateway.admission import Admission
from services.gateway.draining import Drain
from services.gateway.readiness import Readiness

pytestmark = pytest.mark.unit


class Store:
    def __init__(self):
        self.up = True

    async def ping(self) -> bool:
        if not self.up:
            raise RedisConnectionError("Connection refused")
        return True


class Clients:
    async def unresolved(self) -> list[str]:
        return []

    async def statuses(self) -> dict[str, str]:
        return {"asr": "SERVING"}


async def test_redis_out_briefly_leaves_the_gateway_ready_and_out_for_longer_does_not():
    store = Store()
    readiness = Readiness(store, Clients(), Drain(), Admission(4), redis_grace_s=0.3)
    assert (await readiness.check())[0]
    store.up = False
    ready, details = await readiness.check()
    assert ready and details["redis"].startswith("unreachable"), details
    await asyncio.sleep(0.4)
    ready, details = await readiness.check()
    assert not ready and details["redis_out_s"] >= 0.3
    store.up = True
    assert (await readiness.check())[0]


async def test_a_draining_or_full_gateway_is_not_ready():
    drain, admission = Drain(), Admission(1)
    readiness = Readiness(Store(), Clients(), drain, admission, redis_grace_s=30)
    assert admission.admit()
    assert not (await readiness.check())[0]
    admission.release()
    drain.draining = True
    assert not (await readiness.check())[0]
