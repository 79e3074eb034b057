"""Step 10, publish: the avatar bundle the services select by id, at `<avatars_dir>/<avatar_id>/`:

  generator.pt        the SDA generator with the avatar's photo (SDA service)
  persona.json        the name the avatar gives (text engine)
  knowledge/said.txt  what the person said in the recording, as custom text the text engine retrieves from
  llm-adapter.gguf    the LoRA adapter (text engine, applied for this avatar)
  voice/              the Coqui VITS voice (TTS service; the gateway asks for it by the avatar's id)
  asr.nemo            the ASR fine-tuned on the person (ASR_BACKEND=nemo)
  still.png           the photo, for a browser's avatar picker
  bundle.json         where each piece came from
  consent.json        the person's consent on record (--consent-person, --consent-evidence, ...): without it, or
                      with a consent that does not cover the voice and the face, nothing is published
The bundle appears whole (staged under a hidden name, then renamed over any older one).
"""

import json
import shutil

import cv2

from core.atomic import write_json
from core.avatar_bundle import AVATAR_ID, AvatarBundle, is_default
from core.consent import Consent, evidence_kind_of
from core.errors import BadRequest, Refused
from core.sda.checkpoint import load_generator
from pipelines.steps.finetune_asr import MODEL as ASR_MODEL
from pipelines.steps.finetune_llm import ADAPTER, persona_name
from pipelines.steps.finetune_tts import VOICE
from pipelines.options import Options
from pipelines.steps.train_sda import GENERATOR
from pipelines.workspace import PipelineError, Workspace

NEEDS = ["review", "finetune_asr", "finetune_tts", "finetune_llm", "train_sda"]


def key(ws: Workspace, opts: Options) -> dict:
    record = consent(opts)
    return {"avatars_dir": str(opts.avatars_dir.resolve()), "avatar_id": avatar_id(ws, opts),
            "persona": persona_name(ws, opts), "consent": [record.person, record.scopes, record.evidence.sha256]}


def consent(opts: Options) -> Consent:
    """The person's consent from the flags; PipelineError saying what is missing."""
    evidence = opts.consent_evidence
    if not opts.consent_person or evidence is None:
        raise PipelineError("publishing an avatar needs its person's consent on record: --consent-person (who they "
                            "are) and --consent-evidence (the statement they read, as audio or video, or a signed "
                            "document)")
    if not evidence.is_file():
        raise PipelineError(f"--consent-evidence {evidence} is not a file")
    try:
        record = Consent.recorded(opts.consent_person, opts.consent_recorded_by, list(opts.consent_scopes),
                                  evidence.read_bytes(), evidence.name, evidence_kind_of(evidence.name))
    except BadRequest as err:
        raise PipelineError(str(err)) from None
    if not (record.allows("voice") and record.allows("face")):
        raise PipelineError(f"the avatar carries the person's voice and face, and their consent covers "
                            f"{', '.join(record.scopes)} (--consent-scopes): both are needed to publish it")
    return record


def avatar_id(ws: Workspace, opts: Options) -> str:
    chosen = opts.avatar_id or ws.name
    if is_default(chosen) or not AVATAR_ID.fullmatch(chosen):
        raise PipelineError(f"avatar id {chosen!r} must be letters, digits, - and _ (at most 64), and not 'default'")
    return chosen


def run(ws: Workspace, opts: Options) -> dict:
    chosen = avatar_id(ws, opts)
    record = consent(opts)
    try:
        return _publish(ws, opts, chosen, record)
    except (BadRequest, Refused) as err:  # the consent does not cover what was made, or the avatar was withdrawn
        raise PipelineError(str(err)) from None


def _publish(ws: Workspace, opts: Options, chosen: str, record: Consent) -> dict:
    with AvatarBundle.at(opts.avatars_dir, chosen).publishing() as bundle:
        bundle.write_consent(record)
        staging = bundle.folder
        shutil.copy(ws.root / GENERATOR, bundle.generator)
        _, photo = load_generator(bundle.generator)
        cv2.imwrite(str(staging / "still.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        bundle.write_persona(name=persona_name(ws, opts))
        said = json.loads((ws.root / "transcripts_final.json").read_text())
        bundle.knowledge.mkdir()
        (bundle.knowledge / "said.txt").write_text("\n\n".join(said.values()) + "\n")
        shutil.copy(ws.root / ADAPTER, bundle.adapter)
        shutil.copytree(ws.root / VOICE, bundle.voice)
        shutil.copy(ws.root / ASR_MODEL, staging / "asr.nemo")
        write_json(staging / "bundle.json", {
            "avatar_id": chosen,
            "dataset": ws.name,
            "steps": {step: ws.manifest(step) for step in NEEDS},
        })
    return {"avatar_id": chosen, "bundle": str(opts.avatars_dir / chosen)}
