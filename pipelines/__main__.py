"""`python -m pipelines <step|all> --dataset NAME [...]`: from a video to a fine-tuned avatar.

Steps, in order: create_dataset, diarize, clip, transcribe, review, finetune_asr, retranscribe, finetune_tts,
finetune_llm, sda_dataset, train_sda, publish. Each writes under data/<NAME>/ with a manifest, so any one can be re-run alone;
`all` runs them in order, skipping those whose inputs did not change.
"""

import argparse
import getpass
import logging
import sys
from pathlib import Path

from core.consent import SCOPES
from pipelines.options import Options
from pipelines.steps import STEPS, publish, run_step
from pipelines.workspace import PipelineError, Workspace


def parse(argv: list[str]) -> tuple[str, Path, str, Options]:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=[*STEPS, "all"])
    parser.add_argument("--dataset", required=True, help="the dataset's name: letters, digits, - and _")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--url", default="", help="create_dataset: a video or playlist URL, or a local file")
    parser.add_argument("--reference", type=Path, help="diarize: a recording of the target speaker")
    parser.add_argument("--asr-base", type=Path, help="finetune_asr: a .nemo model to fine-tune")
    parser.add_argument("--asr-steps", type=int, default=Options.asr_steps)
    parser.add_argument("--tts-restore", type=Path, help="finetune_tts: a Coqui VITS model.pth to fine-tune")
    parser.add_argument("--tts-size", default=Options.tts_size, choices=["base", "tiny"])
    parser.add_argument("--tts-epochs", type=int, default=Options.tts_epochs)
    parser.add_argument("--llm-steps", type=int, default=Options.llm_steps)
    parser.add_argument("--sda-steps", type=int, default=Options.sda_steps)
    parser.add_argument("--sda-size", default=Options.sda_size, choices=["cpu", "gpu"],
                        help="train_sda: cpu fine-tunes the shipped generator (128×96 crop); gpu trains a 256×192 "
                             "one from the start (give it a GPU and many more steps)")
    parser.add_argument("--avatars-dir", type=Path, default=Options.avatars_dir,
                        help="publish: the avatars folder the services read (their AVATARS_DIR)")
    parser.add_argument("--avatar-id", default="", help="publish: the avatar's id (default: the dataset name)")
    parser.add_argument("--persona-name", default="", help="publish: the name the avatar gives")
    parser.add_argument("--consent-person", default="", help="publish: who the person is (a name or an id)")
    parser.add_argument("--consent-evidence", type=Path,
                        help="publish: the person's consent: the statement they read (audio or video) or a signed "
                             "document; its hash goes on record")
    parser.add_argument("--consent-recorded-by", default=getpass.getuser(), help="publish: who recorded the consent")
    parser.add_argument("--consent-scopes", default=",".join(SCOPES),
                        help=f"publish: what the person agreed to, of {', '.join(SCOPES)}")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="re-run even when the inputs did not change")
    a = parser.parse_args(argv)
    opts = Options(
        url=a.url, reference=a.reference, asr_base=a.asr_base, asr_steps=a.asr_steps, tts_restore=a.tts_restore,
        tts_size=a.tts_size, tts_epochs=a.tts_epochs, llm_steps=a.llm_steps, sda_steps=a.sda_steps, sda_size=a.sda_size,
        avatars_dir=a.avatars_dir, avatar_id=a.avatar_id, persona_name=a.persona_name, accelerator=a.accelerator, devices=a.devices,
        force=a.force, consent_person=a.consent_person, consent_evidence=a.consent_evidence,
        consent_recorded_by=a.consent_recorded_by,
        consent_scopes=tuple(s.strip() for s in a.consent_scopes.split(",") if s.strip()),
    )
    return a.step, a.data_dir, a.dataset, opts


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    step, data_dir, dataset, opts = parse(sys.argv[1:] if argv is None else argv)
    try:
        ws = Workspace.open(dataset, data_dir)
        if step in ("all", "publish"):
            publish.consent(opts)  # no hours of training for an avatar that cannot be published
        for name in STEPS if step == "all" else [step]:
            run_step(name, ws, opts)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
