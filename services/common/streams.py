"""Helpers for the config-first bidirectional streams every speech stage uses."""

from collections.abc import AsyncIterator

from core.errors import BadRequest
from services.common.logs import bind_meta


async def read_config(requests: AsyncIterator, oneof: str = "request"):
    """Return the first message of a stream, which must carry `config`; bind its turn id to the logs."""
    try:
        first = await anext(aiter(requests))
    except StopAsyncIteration:
        raise BadRequest("empty stream: the first message must carry `config`") from None
    kind = first.WhichOneof(oneof)
    if kind != "config":
        raise BadRequest(f"the first message must carry `config`, got `{kind or 'nothing'}`")
    bind_meta(first.meta.session_id, first.meta.turn_id)
    return first


def check_chunk_size(data: bytes, limit: int, what: str = "audio chunk") -> None:
    if len(data) > limit:
        raise BadRequest(f"{what} of {len(data)} bytes exceeds the limit of {limit} bytes; send smaller chunks")
