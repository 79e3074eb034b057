"""What a media file says of its origin: this system's audio watermark, and a C2PA manifest if it carries one.

Any container libav reads (WAV, MP4, WebM, Ogg, FLAC, ...): its first audio track is decoded to 16 kHz mono and
read by the watermark's check; the manifest is read and validated by the C2PA library. Decoding stops, and the file
is refused, once its audio passes `longest_s`: a small compressed file can hold hours.
"""

import io
import json
from dataclasses import asdict, dataclass

import av
import c2pa
import numpy as np

from core.errors import BadRequest
from core.provenance.signing import ASSERTION
from core.provenance.watermark import MARKED, Watermark

RATE = 16000


class TooLong(BadRequest):
    """The file's audio lasts longer than the check reads."""


@dataclass(frozen=True)
class Manifest:
    state: str  # C2PA's verdict: "Valid", "Trusted" or "Invalid"; a development key is valid, never trusted
    signer: str  # the signing certificate's common name
    issuer: str
    generated: bool  # an action says a model made the media
    generation: dict | None  # this system's own assertion: avatar, models, where the audio came from
    problems: list[str]  # validation failures other than an untrusted signer


@dataclass(frozen=True)
class Findings:
    audio_s: float  # how much audio the file holds (0: none)
    watermark_score: float | None  # None: no audio to read
    watermarked: bool
    manifest: Manifest | None

    def as_dict(self) -> dict:
        return asdict(self)


def examine(data: bytes, watermark: Watermark, longest_s: float) -> Findings:
    samples = decode_audio(data, longest_s)
    score = watermark.score(samples, RATE) if samples.size else None
    return Findings(samples.size / RATE, score, score is not None and score >= MARKED, read_manifest(data))


def decode_audio(data: bytes, longest_s: float) -> np.ndarray:
    """The first audio track as 16 kHz mono float32 (empty when the file has none)."""
    try:
        container = av.open(io.BytesIO(data))
    except (av.FFmpegError, ValueError) as err:
        raise BadRequest(f"not a media file libav can read: {err}") from None
    with container:
        if not container.streams.audio:
            return np.zeros(0, np.float32)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        pieces, total = [], 0
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
                    total += out.samples
                if total > longest_s * RATE:
                    raise TooLong(f"the audio lasts more than {longest_s:.0f} s, the most this check reads")
            pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
        except av.FFmpegError as err:
            raise BadRequest(f"the audio track could not be decoded: {err}") from None
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)


def read_manifest(data: bytes) -> Manifest | None:
    try:
        with c2pa.Reader(io.BytesIO(data)) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError:
        return None  # no manifest, or not a format C2PA embeds in
    active = store.get("manifests", {}).get(store.get("active_manifest", ""))
    if active is None:
        return None
    assertions = {a["label"]: a.get("data") for a in active.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions", [])
    signature = active.get("signature_info", {})
    problems = [s.get("explanation") or s.get("code") for s in store.get("validation_status", [])
                if s.get("code") != "signingCredential.untrusted"]
    return Manifest(
        state=store.get("validation_state", "Invalid" if problems else "Valid"),
        signer=signature.get("common_name", ""),
        issuer=signature.get("issuer", ""),
        generated=any("trainedAlgorithmicMedia" in a.get("digitalSourceType", "") for a in actions),
        generation=assertions.get(ASSERTION),
        problems=problems,
    )
