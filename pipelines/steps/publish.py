"""Stage 10, publish: the avatar bundle the services select by id, at `<avatars_dir>/<avatar_id>/`:

  generator.pt        the SDA generator with the avatar's photo (SDA service)
  persona.json        the name the avatar gives (text engine)
  knowledge/said.txt  what the person said in the recording, as custom text the text engine retrieves from
  llm-adapter.gguf    the LoRA adapter (text engine, applied for this avatar)
  voice/              the Coqui VITS voice (TTS service; the gateway asks for it by the avatar's id)
  asr.nemo            the ASR fine-tuned on the person (ASR_BACKEND=nemo)
  still.png           the photo, for a browser's avatar picker
  bundle.json         where each piece came from
The bundle appears whole (staged under a hidden name, then renamed over any older one).
"""

import json
import shutil

import cv2

from core.atomic import write_json
from core.avatar_bundle import AVATAR_ID, AvatarBundle, is_default
from core.sda.checkpoint import load_generator
from pipelines.finetune_asr import MODEL as ASR_MODEL
from pipelines.finetune_llm import ADAPTER, persona_name
from pipelines.finetune_tts import VOICE
from pipelines.options import Options
from pipelines.train_sda import GENERATOR
from pipelines.workspace import PipelineError, Workspace

NEEDS = ["review", "finetune_asr", "finetune_tts", "finetune_llm", "train_sda"]


def key(ws: Workspace, opts: Options) -> dict:
    return {"avatars_dir": str(opts.avatars_dir.resolve()), "avatar_id": avatar_id(ws, opts),
            "persona": persona_name(ws, opts)}


def avatar_id(ws: Workspace, opts: Options) -> str:
    chosen = opts.avatar_id or ws.name
    if is_default(chosen) or not AVATAR_ID.fullmatch(chosen):
        raise PipelineError(f"avatar id {chosen!r} must be letters, digits, - and _ (at most 64), and not 'default'")
    return chosen


def run(ws: Workspace, opts: Options) -> dict:
    chosen = avatar_id(ws, opts)
    with AvatarBundle.at(opts.avatars_dir, chosen).publishing() as bundle:
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
            "stages": {stage: ws.manifest(stage) for stage in NEEDS},
        })
    return {"avatar_id": chosen, "bundle": str(opts.avatars_dir / chosen)}
