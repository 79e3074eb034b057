"""Provenance in the gateway: the check of a file's origin (`POST /v1/provenance`), and the C2PA manifest every
exported video is signed with (`Provenance.sign_video`)."""

import asyncio
import logging
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile

from core.consent import Consent
from core.errors import BadRequest
from core.provenance.origin import TooLong, examine
from core.provenance.signing import SigningKey, generation_manifest, sign
from core.provenance.watermark import MARKED, Watermark
from services.gateway.config import GatewaySettings
from services.gateway.rest_limits import MAX_UPLOAD_BYTES, rate_limited, read_upload

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["provenance"])


class Provenance:
    """The watermark's check and the key that signs exported videos, loaded once at start."""

    def __init__(self, settings: GatewaySettings):
        self.watermark = Watermark(settings.watermark_dir)
        if settings.c2pa_chain_file:
            self.key = SigningKey.from_files(settings.c2pa_chain_file, settings.c2pa_key_file)
        else:
            self.key = SigningKey.development(Path(settings.avatars_dir) / ".signing")
            log.warning("exported videos are signed with a DEVELOPMENT key (%s): set GATEWAY_C2PA_CHAIN_FILE and "
                        "GATEWAY_C2PA_KEY_FILE to the operator's certificate chain and key", self.key.signer_name)

    def sign_video(self, mp4: bytes, avatar_id: str, consent: Consent, audio: np.ndarray, rate: int) -> bytes:
        """The MP4 with a signed manifest: its frames made by the speech-driven face model, for this avatar (or a
        one-off photo), under whose consent, and whether the caller's audio carries this system's watermark."""
        marked = audio.size > 0 and self.watermark.score(audio, rate) >= MARKED
        origin = "supplied by the caller; " + ("carries this system's watermark (generated speech)" if marked
                                               else "no watermark of this system found")
        who = avatar_id or "a one-off photo"
        manifest = generation_manifest("avatar video", who, {"face": "speech-driven animation (services/sda)"}, origin,
                                       {"person": consent.person, "recorded_at": consent.recorded_at.isoformat(),
                                        "evidence_sha256": consent.evidence.sha256})
        return sign(mp4, "video/mp4", manifest, self.key)


@router.post("/provenance", dependencies=[Depends(rate_limited("rest"))])
async def provenance(request: Request, file: UploadFile = File(...)):
    """Does the file (WAV, MP4, WebM, Ogg, ...) carry this system's audio watermark or a C2PA manifest, and what
    does the manifest say? The watermark's verdict is made for speech: other sound (music, tones) may read either
    way."""
    data = await read_upload(file, MAX_UPLOAD_BYTES, "the file")
    settings = request.app.state.settings
    try:
        found = await asyncio.to_thread(examine, data, request.app.state.provenance.watermark,
                                        settings.max_upload_audio_s)
    except TooLong as err:
        raise HTTPException(413, str(err)) from None
    except BadRequest as err:
        raise HTTPException(400, str(err)) from None
    return found.as_dict()
