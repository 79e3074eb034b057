"""REST calls carry the same credential as the WebSocket hello, as `Authorization: Bearer <token>`, and each route
asks for a grant (`access.py`)."""

from collections.abc import Callable

from fastapi import HTTPException, Request

from services.gateway.access import Denied, Grant, Principal


def requires(grant: Grant) -> Callable:
    """A route dependency: the caller's principal, which must hold `grant` (401 without a good credential, 403
    with one that does not grant it)."""

    async def principal(request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            who = request.app.state.access.check(token.strip() if scheme.lower() == "bearer" else "")
        except Denied as err:
            raise HTTPException(401, f"{err}: send `Authorization: Bearer <token>`",
                                headers={"WWW-Authenticate": "Bearer"}) from None
        try:
            who.require(grant)
        except Denied as err:
            raise HTTPException(403, str(err)) from None
        return who

    return principal
