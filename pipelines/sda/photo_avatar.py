"""One photo → a new avatar (the "quick avatar"); the avatar worker runs it for the gateway's REST API, and
`python -m pipelines.sda.photo_avatar PHOTO --avatar-id ID` runs it by hand.

The face is found and aligned, a synthetic talking set is made from that face, and the default generator is
fine-tuned on it for a short while. The result is published, whole, as the bundle `<avatars_dir>/<avatar_id>/`
(generator.pt, persona.json, consent.json: the person's consent, which must cover their face), where the SDA and
text-engine services find it by id.
"""

import argparse
import getpass
import shutil
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from tqdm import tqdm

from core.avatar_bundle import DEFAULT_AVATARS_DIR, AvatarBundle
from core.consent import Consent, evidence_kind_of
from core.errors import Refused
from core.sda.checkpoint import DEFAULT_GENERATOR
from core.sda.face_rig import FaceRig, read_photo
from pipelines.sda.synthetic import write_dataset
from pipelines.sda.train import train

Progress = Callable[[str, float], None]  # (stage, fraction of the whole job done)


class _TrainingProgress(pl.Callback):
    def __init__(self, progress: Progress, steps: int):
        self._progress, self._steps = progress, steps

    def on_train_batch_end(self, trainer, *args) -> None:
        done = trainer.global_step / (2 * self._steps)  # two optimizer steps per iteration
        self._progress("fine-tuning", 0.3 + 0.7 * min(done, 1.0))


def make_avatar(photo: np.ndarray, avatar_id: str, avatars_dir: str | Path, consent: Consent, progress: Progress,
                name: str = "", steps: int = 150, sentences: int = 40, base: Path = DEFAULT_GENERATOR) -> AvatarBundle:
    """Raises FaceError (with a reason for a person) when the photo has no usable face, Refused when the
    consent does not cover the face or the avatar was withdrawn."""
    if not consent.allows("face"):
        raise Refused(f"the person's consent covers {', '.join(consent.scopes)}, not their face")
    AvatarBundle.at(avatars_dir, avatar_id).refuse_withdrawn()
    progress("finding the face", 0.0)
    FaceRig.from_photo(photo)  # fails early on no face / several faces / a small face
    progress("making a synthetic talking set", 0.05)
    bundle = AvatarBundle.at(avatars_dir, avatar_id)
    with tempfile.TemporaryDirectory(prefix="avatar-") as tmp:
        data = write_dataset(Path(tmp) / "data", photo, sentences=sentences, seed=zlib.crc32(avatar_id.encode()) % 10_000)
        progress("fine-tuning", 0.3)
        generator = train(data, Path(tmp) / "run", steps=steps, batch_size=4, resume=False, init_from=base,
                          callbacks=[_TrainingProgress(progress, steps)])
        with bundle.publishing() as staging:
            shutil.copy(generator, staging.generator)
            staging.write_persona(name=name or "Ava")
            staging.write_consent(consent)
    return bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("--avatar-id", required=True)
    parser.add_argument("--avatars-dir", type=Path, default=Path(DEFAULT_AVATARS_DIR))
    parser.add_argument("--name", default="")
    parser.add_argument("--consent-person", required=True, help="who the person in the photo is")
    parser.add_argument("--consent-evidence", type=Path, required=True,
                        help="their consent: the statement they read (audio or video) or a signed document")
    parser.add_argument("--consent-recorded-by", default=getpass.getuser())
    parser.add_argument("--consent-scopes", default="conversation,video_export,face")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--sentences", type=int, default=40)
    args = parser.parse_args()
    with tqdm(total=100, unit="%") as bar:
        def progress(stage: str, done: float) -> None:
            bar.set_description(stage)
            bar.update(round(100 * done) - bar.n)

        consent = Consent.recorded(args.consent_person, args.consent_recorded_by, args.consent_scopes.split(","),
                                   args.consent_evidence.read_bytes(), args.consent_evidence.name,
                                   evidence_kind_of(args.consent_evidence.name))
        bundle = make_avatar(read_photo(args.photo.read_bytes()), args.avatar_id, args.avatars_dir, consent,
                             progress, args.name, args.steps, args.sentences)
    print(f"published {bundle.folder}")


if __name__ == "__main__":
    main()
