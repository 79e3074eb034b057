"""The consent on record for an avatar: who the person is, who recorded their consent and when, what they
consented to, and the evidence (a hash of the statement they read, on audio or video, or of a signed document).

Every published bundle holds one (`consent.json`); a bundle is not published without it, nor with parts its
scopes do not cover (a voice without "voice", a face without "face"). The shipped default avatar has its own
record (`default_consent.json`). A withdrawn avatar leaves a tombstone (`<avatars_dir>/.withdrawn/<id>.json`)
that refuses the id from then on.
"""

import hashlib
import json
import mimetypes
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import BadRequest

Scope = Literal["conversation", "video_export", "voice", "face"]
SCOPES: tuple[Scope, ...] = ("conversation", "video_export", "voice", "face")
EvidenceKind = Literal["statement_audio", "statement_video", "signed_document", "public_domain"]
DEFAULT_RECORD = Path(__file__).with_name("default_consent.json")
_CLOCK_SKEW = timedelta(minutes=5)


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EvidenceKind
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str = Field(default="", max_length=200)  # the evidence file's name, or the public source it is


class Consent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    person: str = Field(min_length=1, max_length=200)  # a name or an id the operator gives
    recorded_by: str = Field(min_length=1, max_length=200)
    recorded_at: datetime
    scopes: tuple[Scope, ...] = Field(min_length=1)
    evidence: Evidence

    @field_validator("person", "recorded_by")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("recorded_at")
    @classmethod
    def _when(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone (e.g. 2026-12-05T14:00:00Z)")
        if value > datetime.now(UTC) + _CLOCK_SKEW:
            raise ValueError("is in the future")
        return value

    @field_validator("scopes")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(scope for scope in SCOPES if scope in value)

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def parse(cls, data: dict | str | bytes) -> "Consent":
        """A consent record from JSON or a dict; BadRequest naming what is missing or wrong."""
        try:
            return cls.model_validate_json(data) if isinstance(data, str | bytes) else cls.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in err.errors())
            raise BadRequest(f"the consent record is not valid: {problems}") from None

    @classmethod
    def recorded(cls, person: str, recorded_by: str, scopes: list[str], evidence: bytes, evidence_name: str,
                 kind: str) -> "Consent":
        """A record made now, for evidence given as bytes (its hash is kept, not the evidence)."""
        return cls.parse({"person": person, "recorded_by": recorded_by, "recorded_at": datetime.now(UTC).isoformat(),
                          "scopes": scopes, "evidence": {"kind": kind, "sha256": hashlib.sha256(evidence).hexdigest(),
                                                         "name": evidence_name}})


def default_consent() -> Consent:
    return Consent.parse(DEFAULT_RECORD.read_text())


def evidence_kind_of(filename: str, content_type: str = "") -> EvidenceKind:
    """The kind of evidence a file is, by its type: a statement read on audio or on video, else a document."""
    media_type = content_type or mimetypes.guess_type(filename)[0] or ""
    if media_type.startswith("audio/"):
        return "statement_audio"
    if media_type.startswith("video/"):
        return "statement_video"
    return "signed_document"


class Withdrawals:
    """The tombstones of withdrawn avatars under an avatars directory: an id once withdrawn is refused."""

    FOLDER = ".withdrawn"

    def __init__(self, avatars_dir: str | Path):
        self._folder = Path(avatars_dir) / self.FOLDER

    def path(self, avatar_id: str) -> Path:
        return self._folder / f"{avatar_id}.json"

    def is_withdrawn(self, avatar_id: str) -> bool:
        return self.path(avatar_id).is_file()

    def record(self, avatar_id: str, by: str, reason: str) -> dict:
        self._folder.mkdir(parents=True, exist_ok=True)
        tombstone = {"avatar_id": avatar_id, "withdrawn_by": by, "reason": reason,
                     "withdrawn_at": datetime.now(UTC).isoformat()}
        staging = self.path(avatar_id).with_suffix(".tmp")
        staging.write_text(json.dumps(tombstone))
        staging.replace(self.path(avatar_id))
        return tombstone

    def read(self, avatar_id: str) -> dict | None:
        return json.loads(self.path(avatar_id).read_text()) if self.is_withdrawn(avatar_id) else None
