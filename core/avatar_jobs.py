"""Jobs that make an avatar from one photo, queued in Redis: the gateway enqueues them and reports their status;
the avatar worker (`python -m pipelines.avatar_worker`) takes them one by one, and runs them.

    avatar:jobs:queue          a list of job ids waiting for a worker (oldest on the right)
    avatar:job:<id>            a hash: state (queued|running|done|failed|withdrawn), stage, progress 0..1, error,
                               name, consent (the person's consent record, JSON), worker, heartbeat (unix s) and
                               lease_s while running
    avatar:job:<id>:photo      the uploaded photo, until a worker has taken it

A running job's worker refreshes its heartbeat every few seconds; a job whose heartbeat is older than its lease
was left by a worker that died (killed, out of memory, its node gone): whoever reads it first marks it failed,
with that reason, so no job stays "running" forever.
"""

import secrets
import time
from dataclasses import dataclass

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

QUEUE = "avatar:jobs:queue"
JOB_TTL_S = 7 * 24 * 3600  # a finished job's status stays readable for a week


def _key(avatar_id: str) -> str:
    return f"avatar:job:{avatar_id}"


def new_avatar_id(slug: str) -> str:
    return f"{slug or 'avatar'}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Job:
    avatar_id: str
    name: str
    photo: bytes
    consent: str  # the person's consent record (core.consent), JSON


class AvatarJobs:
    def __init__(self, client: redis.Redis):
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> "AvatarJobs":
        # a command that finds its connection gone (Redis restarted) is tried again on a new one, briefly
        return cls(redis.from_url(url, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                                  retry_on_error=[ConnectionError, TimeoutError]))

    async def close(self) -> None:
        await self._redis.aclose()

    async def enqueue(self, avatar_id: str, name: str, photo: bytes, consent: str) -> None:
        key = _key(avatar_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"state": "queued", "stage": "waiting for a worker", "progress": 0.0,
                                    "name": name, "consent": consent, "created": time.time()})
            pipe.expire(key, JOB_TTL_S)
            pipe.set(f"{key}:photo", photo, ex=JOB_TTL_S)
            pipe.lpush(QUEUE, avatar_id)
            await pipe.execute()

    async def status(self, avatar_id: str) -> dict | None:
        """The job's state, stage, progress (and error); None for no such job. A running job whose worker
        stopped beating is failed here, with the reason."""
        data = {k.decode(): v.decode() for k, v in (await self._redis.hgetall(_key(avatar_id))).items()}
        if not data:
            return None
        if data["state"] == "running" and time.time() - float(data["heartbeat"]) > float(data["lease_s"]):
            error = (f"the worker running this job ({data.get('worker', '?')}) stopped: no heartbeat for "
                     f"{time.time() - float(data['heartbeat']):.0f} s")
            await self.finish(avatar_id, "failed", error=error, stage=data["stage"])
            data.update(state="failed", error=error)
        status = {"state": data["state"], "stage": data["stage"], "progress": float(data["progress"])}
        if data.get("error"):
            status["error"] = data["error"]
        return status

    async def claim(self, worker: str, lease_s: float, timeout_s: float = 1.0) -> Job | None:
        """The oldest queued job, now running on `worker`; None when none came within `timeout_s`."""
        popped = await self._redis.brpop([QUEUE], timeout=timeout_s)
        if popped is None:
            return None
        avatar_id = popped[1].decode()
        key = _key(avatar_id)
        if await self._redis.hget(key, "state") == b"withdrawn":
            return None  # withdrawn while it waited: nothing to make
        await self._redis.hset(key, mapping={"state": "running", "stage": "starting", "worker": worker,
                                             "heartbeat": time.time(), "lease_s": lease_s})
        photo = await self._redis.getdel(f"{key}:photo")
        name, consent = await self._redis.hmget(key, ["name", "consent"])
        return Job(avatar_id, (name or b"").decode(), photo or b"", (consent or b"").decode())

    async def beat(self, avatar_ids: list[str]) -> None:
        """The worker is alive and still running these jobs."""
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for avatar_id in avatar_ids:
                pipe.hset(_key(avatar_id), "heartbeat", now)
            await pipe.execute()

    async def progress(self, avatar_id: str, stage: str, progress: float) -> None:
        await self._redis.hset(_key(avatar_id), mapping={"stage": stage, "progress": round(progress, 3)})

    async def finish(self, avatar_id: str, state: str, error: str = "", stage: str = "ready") -> None:
        fields = {"state": state, "stage": stage, "error": error}
        if state == "done":
            fields["progress"] = 1.0
        await self._redis.hset(_key(avatar_id), mapping=fields)

    async def withdrawn(self, avatar_id: str) -> None:
        """The avatar was withdrawn: a photo still waiting for a worker is deleted, and the job says so (a worker
        that takes it, or is running it, is refused when it publishes)."""
        key = _key(avatar_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"{key}:photo")
            pipe.hset(key, mapping={"state": "withdrawn", "stage": "withdrawn", "error": ""})
            pipe.expire(key, JOB_TTL_S)
            await pipe.execute()

    async def waiting(self) -> int:
        return await self._redis.llen(QUEUE)
