"""Personas: who the avatar is, and the system prompt that makes its replies speakable."""

import json
from dataclasses import dataclass, replace
from pathlib import Path

from services.common.errors import BadRequest, NotFound


@dataclass(frozen=True)
class Persona:
    name: str = "Ava"
    style: str = "warm, friendly and brief"
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
        lines = [
            f"You are {self.name}, a talking avatar in a live voice conversation. Your name is {self.name}.",
            f"Your style is {self.style}.",
            "Answer in one to three short spoken sentences. Put the most important words first.",
            "Use plain words only: no lists, no markdown, no emoji, no links.",
        ]
        if self.system_prompt:
            lines.append(self.system_prompt)
        return " ".join(lines)


class PersonaBook:
    """Avatars' personas: the default, plus `<avatars_dir>/<avatar_id>/persona.json` for each installed avatar."""

    def __init__(self, avatars_dir: str, default: Persona):
        self._dir = Path(avatars_dir) if avatars_dir else None
        self._default = default

    def get(self, avatar_id: str) -> Persona:
        if avatar_id in ("", "default"):
            return self._default
        if not avatar_id.replace("-", "").replace("_", "").isalnum():
            raise BadRequest(f"avatar id {avatar_id!r} may only hold letters, digits, - and _")
        path = self._dir / avatar_id / "persona.json" if self._dir else None
        if path is None or not path.is_file():
            raise NotFound(f"unknown avatar {avatar_id!r}")
        data = json.loads(path.read_text())
        return Persona(
            name=data.get("name", self._default.name),
            style=data.get("style", self._default.style),
            system_prompt=data.get("system_prompt", ""),
        )
