"""Consent at the REST door: a record taken from a form (a photo's person), and an avatar's record checked for a
use, each refusal as the HTTP status a client expects."""

from fastapi import HTTPException, Request, UploadFile

from core.avatar_bundle import consent_to
from core.consent import Consent, Scope, evidence_kind_of
from core.errors import BadRequest, NotFound, Refused
from services.gateway.access import Principal
from services.gateway.rest_limits import read_upload

MISSING = ("needs its person's consent on record: send consent_person (who they are) and consent_evidence (the "
           "statement they read, as audio or video, or a signed document)")


def avatar_consent(request: Request, avatar_id: str, scope: Scope) -> Consent:
    """The avatar's consent for `scope`: 404 for an unknown avatar, 403 when withdrawn or not agreed to."""
    try:
        return consent_to(request.app.state.settings.avatars_dir, avatar_id, scope)
    except NotFound as err:
        raise HTTPException(404, str(err)) from None
    except Refused as err:
        raise HTTPException(403, str(err)) from None


async def consent_from_form(request: Request, what: str, person: str, evidence: UploadFile | None, scopes: str,
                            recorded_by: str, principal: Principal, needs: tuple[Scope, ...]) -> Consent:
    """The consent a caller records with a photo of `person` for `what` (a new avatar, a video): 422 when missing,
    invalid or short of `needs`, 413 for evidence over the size limit (never cut short)."""
    if not person.strip() or evidence is None:
        raise HTTPException(422, f"{what} {MISSING}")
    data = await read_upload(evidence, request.app.state.settings.max_consent_evidence_bytes, "the consent evidence")
    try:
        consent = Consent.recorded(person, recorded_by or principal.subject,
                                   [s.strip() for s in scopes.split(",") if s.strip()], data, evidence.filename or "",
                                   evidence_kind_of(evidence.filename or "", evidence.content_type or ""))
    except BadRequest as err:
        raise HTTPException(422, str(err)) from None
    if missing := [scope for scope in needs if not consent.allows(scope)]:
        raise HTTPException(422, f"{what} needs the person's consent to {', '.join(missing)}; theirs covers "
                                 f"{', '.join(consent.scopes)}")
    return consent
