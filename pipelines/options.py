"""What a pipeline run was asked to do: the CLI's flags, with defaults for a real avatar (tests pass small ones)."""

from dataclasses import dataclass
from pathlib import Path

from core.avatar_bundle import DEFAULT_AVATARS_DIR
from core.consent import SCOPES


@dataclass
class Options:
    url: str = ""  # create_dataset: video URL, playlist URL or local file
    reference: Path | None = None  # diarize: a clip of the target speaker (else the dominant speaker)
    asr_base: Path | None = None  # finetune_asr: a .nemo model to start from (else a small CTC model from scratch)
    asr_steps: int = 2000
    tts_restore: Path | None = None  # finetune_tts: a Coqui VITS voice/checkpoint to fine-tune (else from scratch)
    tts_size: str = "base"
    tts_epochs: int = 1000
    llm_steps: int = 200
    sda_steps: int = 800
    sda_size: str = "cpu"  # train_sda: cpu fine-tunes the shipped generator; gpu trains the larger size anew
    avatars_dir: Path = Path(DEFAULT_AVATARS_DIR)  # publish: where the services look for avatars (make run's default)
    avatar_id: str = ""  # publish: defaults to the dataset name
    persona_name: str = ""
    # publish: the person's consent on record (core.consent): who they are, the evidence (the statement they read,
    # on audio or video, or a signed document), who recorded it, and what they agreed to
    consent_person: str = ""
    consent_evidence: Path | None = None
    consent_recorded_by: str = ""
    consent_scopes: tuple[str, ...] = SCOPES
    accelerator: str = "cpu"  # training steps: cpu or gpu
    devices: int = 1
    force: bool = False  # re-run a step even when its inputs did not change
