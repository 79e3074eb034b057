"""Personas: who the avatar is, and the system prompt that makes its replies speakable."""

from dataclasses import dataclass, replace
from pathlib import Path

from core.avatar_bundle import DEFAULT, AvatarBundle, check_avatar_id, is_default
from core.errors import NotFound


@dataclass(frozen=True)
class Persona:
    name: str = "Ava"
    style: str = "friendly"
    system_prompt: str = ""

    def merged(self, name: str, style: str, system_prompt: str) -> "Persona":
        """This persona with the non-empty overrides of a request applied."""
        return replace(
            self,
            name=name or self.name,
            style=style or self.style,
            system_prompt=system_prompt or self.system_prompt,
        )

    def system_message(self) -> str:
        # Short on purpose: a 135M model follows two plain sentences far better than a list of rules
        # (measured: the name was given back in 23 of 24 "what is your name?" turns this way).
        message = (
            f"You are {self.name}, a {self.style} talking avatar. Your name is {self.name}. "
            "Answer in one or two short sentences, in plain words."
        )
        if self.system_prompt:
            message = f"{message} {self.system_prompt}"
        return message


class PersonaBook:
    """Avatars' personas: the default, plus `<avatars_dir>/<avatar_id>/persona.json` for each installed avatar."""

    def __init__(self, avatars_dir: str, default: Persona):
        self._dir = Path(avatars_dir) if avatars_dir else None
        self._default = default

    def bundle(self, avatar_id: str) -> AvatarBundle | None:
        """The avatar's bundle (persona, knowledge, adapter), if it has a folder."""
        check_avatar_id(avatar_id or DEFAULT)
        bundle = AvatarBundle.at(self._dir, avatar_id or DEFAULT) if self._dir else None
        return bundle if bundle is not None and bundle.folder.is_dir() else None

    def get(self, avatar_id: str) -> Persona:
        bundle = self.bundle(avatar_id)
        data = bundle.read_persona() if bundle else None
        if data is None:
            if is_default(avatar_id):
                return self._default
            raise NotFound(f"unknown avatar {avatar_id!r}")
        return Persona(
            name=data.get("name", self._default.name),
            style=data.get("style", self._default.style),
            system_prompt=data.get("system_prompt", ""),
        )
