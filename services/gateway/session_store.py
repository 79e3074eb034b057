"""Per-session state in Redis, so any gateway replica can serve a reconnecting client."""

import json
import secrets
import time

import redis.asyncio as redis


class SessionStore:
    def __init__(self, url: str, ttl_s: int):
        self._redis = redis.from_url(url, decode_responses=True)
        self._ttl = ttl_s

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()

    @staticmethod
    def _key(session_id: str) -> str:
        return f"avatar:session:{session_id}"

    async def create(self, avatar_id: str, settings: dict) -> str:
        session_id = secrets.token_urlsafe(16)
        key = self._key(session_id)
        await self._redis.hset(
            key,
            mapping={"avatar_id": avatar_id, "settings": json.dumps(settings), "created": time.time()},
        )
        await self._redis.expire(key, self._ttl)
        return session_id

    async def get(self, session_id: str) -> dict | None:
        data = await self._redis.hgetall(self._key(session_id))
        if not data:
            return None
        await self._redis.expire(self._key(session_id), self._ttl)
        return {"avatar_id": data["avatar_id"], "settings": json.loads(data["settings"])}

    async def append_history(self, session_id: str, role: str, content: str) -> None:
        key = self._key(session_id) + ":history"
        await self._redis.rpush(key, json.dumps({"role": role, "content": content}))
        await self._redis.expire(key, self._ttl)

    async def history(self, session_id: str) -> list[dict]:
        return [json.loads(item) for item in await self._redis.lrange(self._key(session_id) + ":history", 0, -1)]
