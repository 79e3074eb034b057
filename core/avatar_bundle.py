"""A published avatar: one folder under the avatars directory, `<avatars_dir>/<avatar_id>/`, that every service
reads by the avatar's id and every pipeline writes whole:

    generator.pt        the SDA generator with the avatar's photo (SDA service; its presence publishes the avatar)
    consent.json        the person's consent on record (`core.consent`): no bundle is published without it
    persona.json        the name and style the avatar speaks with (text engine)
    knowledge/          plain-text facts the text engine may quote
    llm-adapter.gguf    a LoRA adapter for the text engine
    voice/              a Coqui VITS voice: config.json + model.pth (TTS service)

Every part but the generator and the consent is optional. The id `default` (or an empty id on the wire) is the avatar that ships
inside the services: it has no folder. The avatars directory is one setting, `AVATARS_DIR`, that the services and
the worker all read (`AvatarsDir`).
"""

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from core.atomic import atomic_dir
from core.consent import Consent, Scope, Withdrawals, default_consent
from core.errors import BadRequest, NotFound, Refused

DEFAULT = "default"
DEFAULT_AVATARS_DIR = "var/avatars"  # `make run`'s; the images and the cluster set /data/avatars
# The settings field of every process that reads or writes avatars: the environment's AVATARS_DIR, unprefixed.
AvatarsDir = Annotated[str, Field(default=DEFAULT_AVATARS_DIR, validation_alias="AVATARS_DIR")]
AVATAR_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a folder name, never a path, never too long for a file system


def check_avatar_id(avatar_id: str) -> str:
    if not AVATAR_ID.fullmatch(avatar_id):
        raise BadRequest(f"avatar id {avatar_id[:80]!r} may only hold letters, digits, - and _ (at most 64)")
    return avatar_id


def is_default(avatar_id: str) -> bool:
    return avatar_id in ("", DEFAULT)


def wire_id(avatar_id: str) -> str:
    """The id as the stages' requests carry it: empty for the default avatar."""
    return "" if is_default(avatar_id) else avatar_id


@dataclass(frozen=True)
class AvatarBundle:
    folder: Path

    @classmethod
    def at(cls, avatars_dir: str | Path, avatar_id: str) -> "AvatarBundle":
        """The bundle of a made avatar (which may not exist yet); BadRequest for an id that is not one."""
        return cls(Path(avatars_dir) / check_avatar_id(avatar_id))

    @staticmethod
    def published(avatars_dir: str | Path) -> list[str]:
        """The ids of every published avatar under `avatars_dir`, sorted."""
        root = Path(avatars_dir)
        return sorted(p.parent.name for p in root.glob(f"*/{AvatarBundle.GENERATOR}")) if root.is_dir() else []

    GENERATOR = "generator.pt"
    CONSENT = "consent.json"
    PERSONA = "persona.json"
    KNOWLEDGE = "knowledge"
    ADAPTER = "llm-adapter.gguf"
    VOICE = "voice"
    VOICE_WEIGHTS = "model.pth"  # with config.json: what makes a folder a Coqui voice

    @property
    def avatar_id(self) -> str:
        return self.folder.name

    @property
    def generator(self) -> Path:
        return self.folder / self.GENERATOR

    @property
    def persona(self) -> Path:
        return self.folder / self.PERSONA

    @property
    def knowledge(self) -> Path:
        return self.folder / self.KNOWLEDGE

    @property
    def adapter(self) -> Path:
        return self.folder / self.ADAPTER

    @property
    def voice(self) -> Path:
        return self.folder / self.VOICE

    @staticmethod
    def knowledge_files(knowledge: Path) -> list[Path]:
        """The plain-text files (.txt, .md) of a knowledge folder, sorted; none when it does not exist."""
        if not knowledge.is_dir():
            return []
        return sorted(f for f in knowledge.glob("*") if f.suffix in (".txt", ".md") and f.is_file())

    def is_published(self) -> bool:
        return self.generator.is_file()

    def has_voice(self) -> bool:
        return (self.voice / self.VOICE_WEIGHTS).is_file()

    @property
    def consent(self) -> Path:
        return self.folder / self.CONSENT

    def read_consent(self) -> Consent | None:
        return Consent.parse(self.consent.read_text()) if self.consent.is_file() else None

    def write_consent(self, consent: Consent) -> None:
        self.consent.write_text(consent.to_json())

    def check_consent(self, avatar_id: str = "") -> Consent:
        """The bundle's consent record, which must cover what the bundle holds; BadRequest saying what is
        missing. `avatar_id`: the name to give (a staging bundle's folder is not the avatar's)."""
        avatar_id = avatar_id or self.avatar_id
        consent = self.read_consent()
        if consent is None:
            raise BadRequest(f"avatar {avatar_id!r} has no consent on record: no avatar is published without "
                             f"its person's consent ({self.CONSENT}: who they are, who recorded it and when, what "
                             f"they agreed to, and a hash of the evidence)")
        for part, scope in ((self.generator, "face"), (self.voice, "voice")):
            if part.exists() and not consent.allows(scope):
                raise BadRequest(f"avatar {avatar_id!r} holds a {scope} its person did not consent to "
                                 f"(their consent covers {', '.join(consent.scopes)})")
        return consent

    def read_persona(self) -> dict | None:
        return json.loads(self.persona.read_text()) if self.persona.is_file() else None

    def write_persona(self, **fields) -> None:
        self.persona.write_text(json.dumps(fields))

    @contextmanager
    def publishing(self) -> Iterator["AvatarBundle"]:
        """A staging bundle to fill; it replaces this one, whole, when the block ends without error and with
        the person's consent on record for all it holds. A withdrawn avatar's id is refused."""
        self.refuse_withdrawn()
        with atomic_dir(self.folder) as staging:
            bundle = AvatarBundle(staging)
            yield bundle
            bundle.check_consent(self.avatar_id)
            self.refuse_withdrawn()  # withdrawn while it was being made

    def refuse_withdrawn(self) -> None:
        if Withdrawals(self.folder.parent).is_withdrawn(self.avatar_id):
            raise Refused(f"avatar {self.avatar_id!r} was withdrawn: its person's consent no longer stands, "
                             f"and the id is not published again")


def consent_to(avatars_dir: str | Path, avatar_id: str, scope: Scope) -> Consent:
    """The consent under which `avatar_id` is used for `scope`: the shipped record for the default avatar, the
    bundle's own for a made one. Refused when the avatar was withdrawn, has no consent on record, or its person did
    not agree to `scope`; NotFound when there is no such avatar."""
    if is_default(avatar_id):
        consent = default_consent()
    else:
        bundle = AvatarBundle.at(avatars_dir, avatar_id)
        bundle.refuse_withdrawn()
        if not bundle.is_published():
            raise NotFound(f"unknown avatar {avatar_id!r}")
        consent = bundle.read_consent()
        if consent is None:
            raise Refused(f"avatar {avatar_id!r} has no consent on record; publish it again with its person's "
                          f"consent")
    if not consent.allows(scope):
        raise Refused(f"avatar {avatar_id!r}: its person did not consent to {scope.replace('_', ' ')} (only to "
                      f"{', '.join(consent.scopes)})")
    return consent


def withdraw(avatars_dir: str | Path, avatar_id: str, by: str, reason: str) -> dict:
    """Withdraws a made avatar: a tombstone refuses its id from now on, then its bundle goes (every stage reads
    the bundle from disk, so nothing of it is served once it is gone). The tombstone, with who and why."""
    if is_default(avatar_id):
        raise BadRequest("the default avatar ships inside the services and cannot be withdrawn")
    bundle = AvatarBundle.at(avatars_dir, avatar_id)
    tombstone = Withdrawals(avatars_dir).record(avatar_id, by, reason)
    if bundle.folder.exists():
        doomed = bundle.folder.with_name(f".{avatar_id}.withdrawn")
        shutil.rmtree(doomed, ignore_errors=True)
        bundle.folder.rename(doomed)  # gone at once for every reader; deleted next
        shutil.rmtree(doomed)
    return tombstone
