"""Consent on record: no avatar is published without its person's consent, none is used beyond it, and a
withdrawn one is refused from then on."""

import pytest

from core.avatar_bundle import AvatarBundle, consent_to, withdraw
from core.consent import Consent, Withdrawals, default_consent
from core.errors import BadRequest, NotFound, Refused
from tests.consent import published_bundle

pytestmark = pytest.mark.unit


def _consent(*scopes: str) -> Consent:
    return Consent.recorded("Ada Example", "ops", list(scopes), b"I agree.", "consent.wav", "statement_audio")


def test_a_bundle_without_its_persons_consent_is_not_published(tmp_path):
    with pytest.raises(BadRequest, match="no consent on record"):
        with AvatarBundle.at(tmp_path, "ada").publishing() as staging:
            staging.generator.write_bytes(b"weights")
    assert not (tmp_path / "ada").exists() and not list(tmp_path.iterdir()), "a half-published bundle was left"


def test_a_bundle_holding_what_its_person_did_not_agree_to_is_not_published(tmp_path):
    with pytest.raises(BadRequest, match="holds a voice"):
        with AvatarBundle.at(tmp_path, "ada").publishing() as staging:
            staging.generator.write_bytes(b"weights")
            (staging.voice / "model.pth").parent.mkdir()
            staging.write_consent(_consent("conversation", "face"))
    with AvatarBundle.at(tmp_path, "ada").publishing() as staging:
        staging.generator.write_bytes(b"weights")
        staging.write_consent(_consent("conversation", "face"))
    assert AvatarBundle.at(tmp_path, "ada").read_consent().person == "Ada Example"


def test_a_consent_record_says_what_is_missing_or_wrong():
    with pytest.raises(BadRequest) as refused:
        Consent.parse({"person": " ", "recorded_by": "ops", "recorded_at": "2026-01-01T00:00:00",
                       "scopes": ["sharing"], "evidence": {"kind": "statement_audio", "sha256": "abc"}})
    message = str(refused.value)
    for problem in ("person", "recorded_at", "scopes", "sha256"):
        assert problem in message, message
    with pytest.raises(BadRequest, match="future"):
        Consent.parse({**_consent("face").model_dump(mode="json"), "recorded_at": "2999-01-01T00:00:00Z"})


def test_an_avatar_is_used_only_for_what_its_person_agreed_to(tmp_path):
    published_bundle(tmp_path, "ada", scopes=("conversation", "face"))
    assert consent_to(tmp_path, "ada", "conversation").allows("face")
    with pytest.raises(Refused, match="video export"):
        consent_to(tmp_path, "ada", "video_export")
    with pytest.raises(NotFound):
        consent_to(tmp_path, "nobody", "conversation")
    assert consent_to(tmp_path, "default", "video_export") == default_consent()


def test_a_withdrawn_avatar_is_gone_and_its_id_is_refused_from_then_on(tmp_path):
    bundle = published_bundle(tmp_path, "ada")
    tombstone = withdraw(tmp_path, "ada", "ops", "the person asked")
    assert tombstone["withdrawn_by"] == "ops" and not bundle.folder.exists()
    assert AvatarBundle.published(tmp_path) == []
    with pytest.raises(Refused, match="withdrawn"):
        consent_to(tmp_path, "ada", "conversation")
    with pytest.raises(Refused, match="withdrawn"):
        with AvatarBundle.at(tmp_path, "ada").publishing() as staging:
            staging.generator.write_bytes(b"weights")
            staging.write_consent(_consent("face"))
    assert not bundle.folder.exists() and Withdrawals(tmp_path).is_withdrawn("ada")
    with pytest.raises(BadRequest, match="default"):
        withdraw(tmp_path, "default", "ops", "")
