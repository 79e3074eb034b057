"""Whether this gateway should be sent new conversations, and why not.

Ready: every stage's name resolves (a name that resolves nowhere is a broken network: no turn could ever reach
it), the gateway is not draining and has room for another conversation, and Redis answers — or has been out for
less than `GATEWAY_REDIS_OUTAGE_GRACE_S`: every gateway shares one Redis, and a conversation goes on from memory
while it restarts, so a brief outage takes no gateway out of the load balancer. The details (each stage's
health, Redis, sessions) are for operators: the public port says only ready or not.
"""

import time

from redis.exceptions import RedisError

from services.gateway.admission import Admission
from services.gateway.draining import Drain
from services.gateway.session_store import SessionStore
from services.gateway.stage_channels import StageClients


class Readiness:
    def __init__(self, store: SessionStore, clients: StageClients, drain: Drain, admission: Admission,
                 redis_grace_s: float):
        self._store, self._clients, self._drain, self._admission = store, clients, drain, admission
        self._grace_s = redis_grace_s
        self._redis_down_since: float | None = None

    async def check(self) -> tuple[bool, dict]:
        """(ready, the details)."""
        try:
            redis = "ok" if await self._store.ping() else "unreachable"
        except (OSError, RedisError) as err:  # down, refusing (protected mode, a wrong password), or not Redis
            redis = f"unreachable: {err}"[:200]
        now = time.monotonic()
        if redis == "ok":
            self._redis_down_since = None
        elif self._redis_down_since is None:
            self._redis_down_since = now
        redis_out_s = 0.0 if self._redis_down_since is None else now - self._redis_down_since
        unresolved = await self._clients.unresolved()
        admission = self._admission
        details = {"redis": redis, "redis_out_s": round(redis_out_s, 1), "stages": await self._clients.statuses(),
                   "unresolved": unresolved, "draining": self._drain.draining,
                   "sessions": {"admitted": admission.admitted, "capacity": admission.capacity,
                                "ceiling": admission.max_sessions, "predicted": admission.predicted,
                                "full": admission.full}}
        redis_fine = redis == "ok" or redis_out_s < self._grace_s
        return redis_fine and not unresolved and not self._drain.draining and not admission.full, details
