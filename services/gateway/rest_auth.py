"""The REST API asks for the same token as the WebSocket hello (GATEWAY_AUTH_TOKEN), as `Authorization: Bearer`."""

import secrets

from fastapi import HTTPException, Request


async def require_token(request: Request) -> None:
    expected = request.app.state.settings.auth_token
    if not expected:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), expected):
        raise HTTPException(401, "missing or wrong token: send `Authorization: Bearer <GATEWAY_AUTH_TOKEN>`",
                            headers={"WWW-Authenticate": "Bearer"})
