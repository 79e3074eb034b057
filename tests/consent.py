"""Consent for tests: what a test sends for a photo avatar (who the person is, the statement they read as a WAV),
and a made avatar's bundle with its consent on record, for tests that need one on disk."""

import functools
import io
from pathlib import Path

import soundfile as sf

from core.avatar_bundle import AvatarBundle
from core.consent import SCOPES, Consent

STATEMENT = "I agree that my face makes this avatar, for live conversation and video."


@functools.cache
def statement_wav() -> bytes:
    from tests.speech import speak

    out = io.BytesIO()
    sf.write(out, speak(STATEMENT), 16000, format="WAV")
    return out.getvalue()


def consent_form(person: str = "Eileen Example", **more: str) -> dict:
    return {"consent_person": person, **more}


def consent_files() -> dict:
    return {"consent_evidence": ("consent.wav", statement_wav(), "audio/wav")}


def published_bundle(avatars_dir: Path, avatar_id: str, scopes: tuple[str, ...] = SCOPES) -> AvatarBundle:
    """A made avatar's folder as the gateway checks it: its generator file (empty: fake stages draw the face) and
    its person's consent to `scopes`."""
    bundle = AvatarBundle.at(avatars_dir, avatar_id)
    bundle.folder.mkdir(parents=True, exist_ok=True)
    bundle.generator.touch()
    bundle.write_consent(Consent.recorded("A Person", "a test", list(scopes), b"I agree.", "consent.txt",
                                          "signed_document"))
    return bundle
