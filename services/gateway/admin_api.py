"""REST for operators: mint per-user access tokens signed with the gateway's key (for sites without an identity
provider). Needs the `admin` grant."""

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from services.gateway.access import GRANTS

router = APIRouter(prefix="/admin", tags=["admin"])


class TokenRequest(BaseModel):
    subject: str = Field(min_length=1, max_length=200)
    grants: list[str] = ["converse"]
    avatars: list[str] | None = None  # None: every avatar
    ttl_s: int = Field(default=3600, ge=60, le=30 * 24 * 3600)


@router.post("/tokens")
async def mint_token(request: Request, body: TokenRequest) -> dict:
    """A signed token for `subject` with `grants` (of converse, rest, make_avatars, admin), valid `ttl_s`."""
    try:
        token = request.app.state.access.mint(body.subject, body.grants, body.avatars, body.ttl_s)
    except ValueError as err:
        raise HTTPException(400, f"{err} (grants: {list(GRANTS)})") from None
    return {"token": token, "subject": body.subject, "grants": body.grants, "expires_in": body.ttl_s}
