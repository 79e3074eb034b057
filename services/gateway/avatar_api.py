"""REST for avatars: list them, and make a new one from one photo (a background job with progress)."""

import asyncio
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile

from avatar.sda.v1 import sda_pb2
from pipelines.sda.face_rig import FaceError, FaceRig
from pipelines.sda.photo_avatar import read_photo
from services.common.avatar_ids import AVATAR_ID
from services.gateway.config import GatewaySettings

router = APIRouter(prefix="/v1/avatars", tags=["avatars"])


def _jobs(settings: GatewaySettings) -> Path:
    folder = Path(settings.avatars_dir) / ".jobs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@router.get("")
async def list_avatars(request: Request) -> dict:
    """The avatars the animation stage can show; `default` always."""
    reply = await request.app.state.clients.sda.ListAvatars(sda_pb2.ListAvatarsRequest(), timeout=5)
    return {"default": reply.default_avatar, "avatars": [a.avatar_id for a in reply.avatars]}


@router.post("", status_code=202)
async def create_avatar(request: Request, photo: UploadFile = File(...), name: str = Form("")) -> dict:
    """Start making an avatar from one portrait photo. 422 when the photo has no usable face."""
    settings: GatewaySettings = request.app.state.settings
    data = await photo.read(settings.max_photo_bytes + 1)
    if len(data) > settings.max_photo_bytes:
        raise HTTPException(413, f"the photo exceeds {settings.max_photo_bytes} bytes")
    try:
        await asyncio.to_thread(lambda: FaceRig.from_photo(read_photo(data)))
    except FaceError as err:
        raise HTTPException(422, str(err)) from None
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "avatar"
    avatar_id = f"{slug}-{secrets.token_hex(3)}"
    jobs = _jobs(settings)
    (jobs / f"{avatar_id}.img").write_bytes(data)
    status = jobs / f"{avatar_id}.json"
    status.write_text(json.dumps({"state": "running", "stage": "queued", "progress": 0.0}))
    log = open(jobs / f"{avatar_id}.log", "wb")
    subprocess.Popen(
        [sys.executable, "-m", "pipelines.sda.photo_avatar", "--photo", str(jobs / f"{avatar_id}.img"),
         "--avatar-id", avatar_id, "--avatars-dir", settings.avatars_dir, "--status", str(status),
         "--name", name, "--steps", str(settings.photo_avatar_steps),
         "--sentences", str(settings.photo_avatar_sentences)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return {"avatar_id": avatar_id, "status_url": f"/v1/avatars/{avatar_id}"}


@router.get("/{avatar_id}")
async def avatar_status(request: Request, avatar_id: str) -> dict:
    """Progress of an avatar being made, or `done` once it can be used."""
    settings: GatewaySettings = request.app.state.settings
    if not AVATAR_ID.fullmatch(avatar_id):
        raise HTTPException(404, f"unknown avatar {avatar_id!r}")
    status = _jobs(settings) / f"{avatar_id}.json"
    if status.is_file():
        return {"avatar_id": avatar_id, **json.loads(status.read_text())}
    if (Path(settings.avatars_dir) / avatar_id / "generator.pt").is_file() or avatar_id == "default":
        return {"avatar_id": avatar_id, "state": "done", "progress": 1.0}
    raise HTTPException(404, f"unknown avatar {avatar_id!r}")
