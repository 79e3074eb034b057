"""REST calls carry the same credential as the WebSocket hello, as `Authorization: Bearer <token>`, and each route
asks for a grant (`access.py`)."""

from collections.abc import Callable

from fastapi import HTTPException, Request

from services.gateway.access import Denied, Grant, Principal


def requires(grant: Grant, *or_grants: Grant) -> Callable:
    """A route dependency: the caller's principal, which must hold `grant` or one of `or_grants` (401 without a
    good credential, 403 with one that grants none of them)."""

    async def principal(request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            who = request.app.state.access.check(token.strip() if scheme.lower() == "bearer" else "")
        except Denied as err:
            raise HTTPException(401, f"{err}: send `Authorization: Bearer <token>`",
                                headers={"WWW-Authenticate": "Bearer"}) from None
        if not who.grants & {grant, *or_grants}:
            raise HTTPException(403, f"this token grants none of {sorted({grant, *or_grants})}")
        return who

    return principal
