"""REST for avatars: list them, show one's face at rest, and make a new one from one photo. The photo is checked here (one usable face);
the making is a job for the avatar worker, queued in Redis (`core.avatar_jobs`); its status is read back here."""

import asyncio
import contextlib
import re
from collections import OrderedDict

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, Response, UploadFile

from avatar.sda.v1 import sda_pb2
from core.avatar_bundle import AVATAR_ID, DEFAULT, AvatarBundle
from core.avatar_jobs import AvatarJobs, new_avatar_id
from core.sda.face_rig import FaceError, FaceRig, read_photo
from services.gateway.config import GatewaySettings
from services.gateway.rest_limits import rate_limited
from services.gateway.stages import OUTPUT_RATE, Animator, Face, StageFailed, TurnMeta, VideoOut

router = APIRouter(prefix="/v1/avatars", tags=["avatars"])


@router.get("")
async def list_avatars(request: Request) -> dict:
    """The avatars the animation stage can show; `default` always."""
    reply = await request.app.state.clients.sda.ListAvatars(sda_pb2.ListAvatarsRequest(), timeout=5)
    return {"default": reply.default_avatar, "avatars": [a.avatar_id for a in reply.avatars]}


@router.post("", status_code=202, dependencies=[Depends(rate_limited("make_avatars"))])
async def create_avatar(request: Request, photo: UploadFile = File(...), name: str = Form("")) -> dict:
    """Queue an avatar made from one portrait photo. 413 for a photo over the size limit (never cut short), 422
    when it has no usable face."""
    settings: GatewaySettings = request.app.state.settings
    data = await photo.read(settings.max_photo_bytes + 1)
    if len(data) > settings.max_photo_bytes:
        raise HTTPException(413, f"the photo exceeds {settings.max_photo_bytes} bytes")
    try:
        await asyncio.to_thread(lambda: FaceRig.from_photo(read_photo(data)))
    except FaceError as err:
        raise HTTPException(422, str(err)) from None
    avatar_id = new_avatar_id(re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24])
    jobs: AvatarJobs = request.app.state.jobs
    await jobs.enqueue(avatar_id, name, data)
    return {"avatar_id": avatar_id, "status_url": f"/v1/avatars/{avatar_id}"}


_STILLS: OrderedDict[str, bytes] = OrderedDict()  # the last avatars' stills, as the animation stage drew them
_STILLS_KEPT = 32


@router.get("/{avatar_id}/still", response_class=Response)
async def avatar_still(request: Request, avatar_id: str) -> Response:
    """The avatar's face at rest (a JPEG, as the animation stage draws it): what a page shows before anyone
    speaks."""
    if avatar_id != DEFAULT and not AVATAR_ID.fullmatch(avatar_id):
        raise HTTPException(404, f"unknown avatar {avatar_id!r}")
    if avatar_id not in _STILLS:
        _STILLS[avatar_id] = await _draw_still(request.app.state.stages.sda, avatar_id)
        while len(_STILLS) > _STILLS_KEPT:
            _STILLS.popitem(last=False)
    _STILLS.move_to_end(avatar_id)
    return Response(_STILLS[avatar_id], media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})


async def _draw_still(animator: Animator, avatar_id: str) -> bytes:
    async def silence():  # one frame's worth: the mouth at rest
        yield b"\0\0" * (OUTPUT_RATE // 25)

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
    status = await request.app.state.jobs.status(avatar_id)
    if status is not None:
        return {"avatar_id": avatar_id, **status}
    if avatar_id == DEFAULT or AvatarBundle.at(settings.avatars_dir, avatar_id).is_published():
        return {"avatar_id": avatar_id, "state": "done", "progress": 1.0}
    raise HTTPException(404, f"unknown avatar {avatar_id!r}")
