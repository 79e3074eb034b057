"""Per-session state in Redis, so any gateway replica can serve a reconnecting client: the avatar and settings
the session was opened with, the next turn's number (unique across reconnects), and the capped history."""

import functools
import json
import secrets
import time

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from services.gateway.history import BLOCK

# Appends entry number ARGV[2] unless the session already holds it (a write tried again after Redis went down
# part-way through it), drops whole blocks of ARGV[4] from the oldest end past ARGV[3] messages (the rule of
# services.gateway.history.blocks_to_drop, which needs the length only Redis knows here), and renews the expiry:
# all at once, so a retried write can neither double an entry nor trim twice.
_APPEND = """
local number = tonumber(ARGV[2])
if tonumber(redis.call('HGET', KEYS[1], 'appended') or '0') >= number then return 0 end
local length = redis.call('RPUSH', KEYS[2], ARGV[1])
local over = length - tonumber(ARGV[3])
if over > 0 then
  local block = tonumber(ARGV[4])
  redis.call('LTRIM', KEYS[2], math.ceil(over / block) * block, -1)
end
redis.call('HSET', KEYS[1], 'appended', number)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
return 1
"""


class StoreUnavailable(Exception):
    """Redis did not answer (down, restarting, unreachable)."""


def _answers(method):
    @functools.wraps(method)
    async def call(*args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError) as err:
            raise StoreUnavailable(f"the session store is unavailable: {err}") from err
    return call


class SessionStore:
    def __init__(self, url: str, ttl_s: int, max_history: int = 400):
        # A command that finds its connection gone (Redis restarted) is tried again on a new one, briefly.
        self._redis = redis.from_url(url, decode_responses=True, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                                     retry_on_error=[ConnectionError, TimeoutError])
        self._ttl = ttl_s
        self._max_history = max_history
        self._append = self._redis.register_script(_APPEND)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()

    @staticmethod
    def _key(session_id: str) -> str:
        return f"avatar:session:{session_id}"

    @_answers
    async def create(self, avatar_id: str, settings: dict, subject: str) -> str:
        """A new session of `subject` (the user whose token opened it: only they may resume it)."""
        session_id = secrets.token_urlsafe(16)
        key = self._key(session_id)
        await self._redis.hset(key, mapping={"avatar_id": avatar_id, "settings": json.dumps(settings),
                                             "created": time.time(), "next_turn": 0, "subject": subject})
        await self._redis.expire(key, self._ttl)
        return session_id

    @_answers
    async def get(self, session_id: str) -> dict | None:
        """avatar_id, settings, next_turn, appended (history entries ever added) and subject (None for a session
        stored before sessions had one) of a session; None when it does not exist (or expired)."""
        data = await self._redis.hgetall(self._key(session_id))
        if not data:
            return None
        await self._redis.expire(self._key(session_id), self._ttl)
        await self._redis.expire(self._key(session_id) + ":history", self._ttl)
        return {"avatar_id": data["avatar_id"], "settings": json.loads(data["settings"]),
                "next_turn": int(data.get("next_turn", 0)), "appended": int(data.get("appended", 0)),
                "subject": data.get("subject")}

    @_answers
    async def update(self, session_id: str, avatar_id: str, settings: dict) -> None:
        await self._redis.hset(self._key(session_id), mapping={"avatar_id": avatar_id, "settings": json.dumps(settings)})

    @_answers
    async def next_turn(self, session_id: str) -> int:
        """Takes the next turn number of the session (each number once, whichever connection asks)."""
        return int(await self._redis.hincrby(self._key(session_id), "next_turn", 1))

    @_answers
    async def turns_at_least(self, session_id: str, count: int) -> None:
        """The session's next turn number is at least `count` (turns were numbered while the store was down)."""
        key = self._key(session_id)
        if int(await self._redis.hget(key, "next_turn") or 0) < count:
            await self._redis.hset(key, "next_turn", count)

    @_answers
    async def append_history(self, session_id: str, entry: dict, number: int) -> None:
        """Adds the session's `number`th history entry (counted from 1 since the session began); writing the same
        number again changes nothing."""
        key = self._key(session_id)
        await self._append(keys=[key, key + ":history"],
                           args=[json.dumps(entry), number, self._max_history, BLOCK, self._ttl])

    @_answers
    async def replace_last_history(self, session_id: str, entry: dict) -> None:
        await self._redis.lset(self._key(session_id) + ":history", -1, json.dumps(entry))

    @_answers
    async def history(self, session_id: str) -> list[dict]:
        return [json.loads(item) for item in await self._redis.lrange(self._key(session_id) + ":history", 0, -1)]
