"""REST for operators: mint per-user access tokens signed with the gateway's key (for sites without an identity
provider); show an avatar's consent on record, and withdraw an avatar whose person withdrew their consent. Needs
the `admin` grant."""

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from core.avatar_bundle import AVATAR_ID, AvatarBundle, is_default, withdraw
from core.consent import Withdrawals, default_consent
from services.gateway.access import GRANTS, Principal
from services.gateway.avatar_api import forget_still
from services.gateway.rest_auth import requires

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


def _known_bundle(request: Request, avatar_id: str) -> AvatarBundle:
    if not AVATAR_ID.fullmatch(avatar_id):
        raise HTTPException(404, f"unknown avatar {avatar_id!r}")
    return AvatarBundle.at(request.app.state.settings.avatars_dir, avatar_id)


@router.get("/avatars/{avatar_id}/consent")
async def avatar_consent(request: Request, avatar_id: str) -> dict:
    """The consent on record for an avatar (the shipped record for `default`); 410 once it was withdrawn."""
    if is_default(avatar_id):
        return default_consent().model_dump(mode="json")
    bundle = _known_bundle(request, avatar_id)
    if (tombstone := Withdrawals(bundle.folder.parent).read(avatar_id)) is not None:
        raise HTTPException(410, f"avatar {avatar_id!r} was withdrawn at {tombstone['withdrawn_at']}")
    consent = await asyncio.to_thread(bundle.read_consent)
    if consent is None:
        raise HTTPException(404, f"avatar {avatar_id!r} has no consent on record" if bundle.is_published() else
                            f"unknown avatar {avatar_id!r}")
    return consent.model_dump(mode="json")


@router.delete("/avatars/{avatar_id}")
async def withdraw_avatar(request: Request, avatar_id: str, reason: str = "",
                          principal: Principal = Depends(requires("admin"))) -> dict:
    """Withdraw an avatar (its person withdrew their consent): its id is refused from now on by every part of the
    system, its bundle is deleted (face, voice, persona, knowledge: each stage reads them from disk, so nothing
    of it is served once it is gone), and a photo still waiting for the worker is deleted. Calling it again says
    the same."""
    if is_default(avatar_id):
        raise HTTPException(400, "the default avatar ships inside the services and cannot be withdrawn")
    bundle = _known_bundle(request, avatar_id)
    jobs = request.app.state.jobs
    withdrawals = Withdrawals(bundle.folder.parent)
    if not (bundle.folder.exists() or withdrawals.is_withdrawn(avatar_id) or await jobs.status(avatar_id)):
        raise HTTPException(404, f"unknown avatar {avatar_id!r}")
    tombstone = withdrawals.read(avatar_id) or await asyncio.to_thread(
        withdraw, bundle.folder.parent, avatar_id, principal.subject, reason)
    await jobs.withdrawn(avatar_id)
    forget_still(avatar_id)
    return {"state": "withdrawn", **tombstone}
