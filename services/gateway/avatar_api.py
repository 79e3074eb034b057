"""REST for avatars: list them (and the voices they may speak with), show one's face at rest, and make a new one from one photo. The photo is checked here (one usable face);
the making is a job for the avatar worker, queued in Redis (`core.avatar_jobs`); its status is read back here."""

import asyncio
import contextlib
import re
from collections import OrderedDict
from typing import Literal

import cv2
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, Response, UploadFile

from core.avatar_bundle import AVATAR_ID, DEFAULT, AvatarBundle
from core.avatar_jobs import AvatarJobs, new_avatar_id
from core.consent import Withdrawals
from core.sda.face_rig import FaceError, FaceRig, blink, read_photo
from services.gateway.access import Principal
from services.gateway.config import GatewaySettings
from services.gateway.consent_http import MISSING, avatar_consent, consent_from_form
from services.gateway.rest_auth import requires
from services.gateway.rest_limits import rate_limited, read_upload
from services.gateway.stages import OUTPUT_RATE, Animator, Face, SpeechChunk, StageFailed, TurnMeta, VideoOut

router = APIRouter(prefix="/v1/avatars", tags=["avatars"])


@router.get("")
async def list_avatars(request: Request) -> dict:
    """The avatars the animation stage can show; `default` always."""
    try:
        listed = await request.app.state.stages.sda.avatars()
    except StageFailed as err:
        raise HTTPException(503, err.message) from None
    return {"default": listed.default, "avatars": listed.ids}


voices_router = APIRouter(prefix="/v1/voices", tags=["avatars"])


@voices_router.get("")
async def list_voices(request: Request) -> dict:
    """The voices a conversation can speak with (the hello's `settings.voice`); made avatars' own among them."""
    try:
        listed = await request.app.state.stages.tts.voices()
    except StageFailed as err:
        raise HTTPException(503, err.message) from None
    return {"default": listed.default, "voices": listed.names}


@router.post("", status_code=202, dependencies=[Depends(rate_limited("make_avatars"))])
async def create_avatar(request: Request, photo: UploadFile = File(...), name: str = Form(""),
                        consent_person: str = Form(""), consent_evidence: UploadFile | None = File(None),
                        consent_scopes: str = Form("conversation,video_export,face"),
                        consent_recorded_by: str = Form(""),
                        principal: Principal = Depends(requires("make_avatars"))) -> dict:
    """Queue an avatar made from one portrait photo of a person who consented: `consent_person` (who they are)
    and `consent_evidence` (the statement they read, on audio or video, or a signed document; only its hash is
    kept) go on record with what they agreed to (`consent_scopes`, which must include `face`) and who recorded it
    (`consent_recorded_by`, else the caller's token subject). 422 without them or without a usable face; 413 for a
    photo or evidence over the size limit (never cut short)."""
    settings: GatewaySettings = request.app.state.settings
    if not consent_person.strip() or consent_evidence is None:  # before reading the photo
        raise HTTPException(422, f"an avatar {MISSING}")
    data = await read_upload(photo, settings.max_photo_bytes, "the photo")
    consent = await consent_from_form(request, "an avatar", consent_person, consent_evidence, consent_scopes,
                                      consent_recorded_by, principal, needs=("face",))
    try:
        await asyncio.to_thread(lambda: FaceRig.from_photo(read_photo(data)))
    except FaceError as err:
        raise HTTPException(422, str(err)) from None
    avatar_id = new_avatar_id(re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24])
    jobs: AvatarJobs = request.app.state.jobs
    await jobs.enqueue(avatar_id, name, data, consent.to_json())
    return {"avatar_id": avatar_id, "status_url": f"/v1/avatars/{avatar_id}"}


# The last avatars' stills, by avatar then eyes: an avatar's pictures are kept and dropped together, so its
# closed eyes are always drawn over the open-eyed still served beside them.
_STILLS: OrderedDict[str, dict[str, bytes]] = OrderedDict()
_STILLS_KEPT = 32


@router.get("/{avatar_id}/still", response_class=Response)
async def avatar_still(request: Request, avatar_id: str, eyes: Literal["open", "closed"] = "open") -> Response:
    """The avatar's face at rest (a JPEG, as the animation stage draws it): what a page shows before anyone
    speaks; `eyes=closed` is the same face with its eyelids down, for a page to blink with (404 when no eyes are
    found in it)."""
    if avatar_id != DEFAULT and not AVATAR_ID.fullmatch(avatar_id):
        raise HTTPException(404, f"unknown avatar {avatar_id!r}")
    try:
        avatar_consent(request, avatar_id, "conversation")
    except HTTPException:
        forget_still(avatar_id)
        raise
    pictures = _STILLS.get(avatar_id) or {"open": await _draw_still(request.app.state.stages.sda, avatar_id)}
    if eyes not in pictures:
        pictures[eyes] = await asyncio.to_thread(_eyes_closed, pictures["open"])
    _STILLS[avatar_id] = pictures
    _STILLS.move_to_end(avatar_id)
    while len(_STILLS) > _STILLS_KEPT:
        _STILLS.popitem(last=False)
    return Response(pictures[eyes], media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})


def forget_still(avatar_id: str) -> None:
    _STILLS.pop(avatar_id, None)


def _eyes_closed(still: bytes) -> bytes:
    image = read_photo(still)
    try:
        closed = blink(image, FaceRig.from_photo(image).photo_points, 1.0)
    except FaceError as err:
        raise HTTPException(404, f"no eyes to close in the avatar's still: {err}") from None
    return cv2.imencode(".jpg", cv2.cvtColor(closed, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


async def _draw_still(animator: Animator, avatar_id: str) -> bytes:
    async def silence():  # one frame's worth: the mouth at rest
        yield SpeechChunk(b"\0\0" * (OUTPUT_RATE // 25))

    frames = animator.animate(silence(), Face(avatar_id), TurnMeta("still", 0), VideoOut(jpeg_quality=85))
    try:
        async with contextlib.aclosing(frames):
            async for frame in frames:
                return frame.image
    except StageFailed as err:
        raise HTTPException(404 if err.kind == "not_found" else 503, err.message) from None
    raise HTTPException(503, "the animation stage drew nothing")


@router.get("/{avatar_id}")
async def avatar_status(request: Request, avatar_id: str) -> dict:
    """Where the making of an avatar stands (queued, running, done or failed with the reason), or `done` for an
    avatar that was published another way (the pipeline)."""
    settings: GatewaySettings = request.app.state.settings
    if not AVATAR_ID.fullmatch(avatar_id):
        raise HTTPException(404, f"unknown avatar {avatar_id!r}")
    if (tombstone := Withdrawals(settings.avatars_dir).read(avatar_id)) is not None:
        return {"avatar_id": avatar_id, "state": "withdrawn", "withdrawn_at": tombstone["withdrawn_at"]}
    status = await request.app.state.jobs.status(avatar_id)
    if status is not None:
        return {"avatar_id": avatar_id, **status}
    if avatar_id == DEFAULT or AvatarBundle.at(settings.avatars_dir, avatar_id).is_published():
        return {"avatar_id": avatar_id, "state": "done", "progress": 1.0}
    raise HTTPException(404, f"unknown avatar {avatar_id!r}")
