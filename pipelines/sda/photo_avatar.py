"""`python -m pipelines.sda.photo_avatar`: one photo → a new avatar (the "quick avatar").

The face is found and aligned, a synthetic talking set is made from that face, and the default generator is
fine-tuned on it for a short while. The result lands in `<avatars_dir>/<avatar_id>/` (generator.pt,
persona.json), where the SDA and text-engine services find it by id. Progress goes to a JSON status file that
the gateway serves: {"state": "running"|"done"|"failed", "stage": ..., "progress": 0..1, "error": ...}.
"""

import argparse
import json
import shutil
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytorch_lightning as pl

from pipelines.sda.face_rig import FaceError, FaceRig
from pipelines.sda.synthetic import write_dataset
from pipelines.sda.train import train

DEFAULT_GENERATOR = Path(__file__).resolve().parents[2] / "services" / "sda" / "checkpoints" / "default.pt"


class Status:
    def __init__(self, path: Path):
        self._path = path

    def write(self, **fields) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(fields))
        tmp.replace(self._path)


class _Progress(pl.Callback):
    def __init__(self, status: Status, steps: int):
        self._status, self._steps = status, steps

    def on_train_batch_end(self, trainer, *args) -> None:
        done = trainer.global_step / (2 * self._steps)  # two optimizer steps per iteration
        self._status.write(state="running", stage="fine-tuning", progress=round(0.3 + 0.7 * done, 3))


def read_photo(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FaceError("the file is not a JPEG or PNG image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def make_avatar(photo: np.ndarray, avatar_id: str, avatars_dir: Path, status: Status, name: str = "",
                steps: int = 150, sentences: int = 40, base: Path = DEFAULT_GENERATOR) -> Path:
    FaceRig.from_photo(photo)  # fails early, with a reason, on no face / several faces / a small face
    status.write(state="running", stage="making a synthetic talking set", progress=0.05)
    with tempfile.TemporaryDirectory(prefix="avatar-") as tmp:
        data = write_dataset(Path(tmp) / "data", photo, sentences=sentences, seed=zlib.crc32(avatar_id.encode()) % 10_000)
        status.write(state="running", stage="fine-tuning", progress=0.3)
        generator = train(data, Path(tmp) / "run", steps=steps, batch_size=4, resume=False, init_from=base,
                          callbacks=[_Progress(status, steps)])
        target = avatars_dir / avatar_id
        staging = avatars_dir / f".{avatar_id}.partial"
        staging.mkdir(parents=True, exist_ok=True)
        shutil.copy(generator, staging / "generator.pt")
        (staging / "persona.json").write_text(json.dumps({"name": name or "Ava"}))
        staging.rename(target)  # the avatar appears whole or not at all
    status.write(state="done", stage="ready", progress=1.0, avatar_id=avatar_id)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--avatar-id", required=True)
    parser.add_argument("--avatars-dir", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--name", default="")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--sentences", type=int, default=40)
    args = parser.parse_args()
    status = Status(args.status)
    try:
        make_avatar(read_photo(args.photo.read_bytes()), args.avatar_id, args.avatars_dir, status, args.name,
                    args.steps, args.sentences)
    except FaceError as err:
        status.write(state="failed", stage="finding the face", progress=0.0, error=str(err))
        raise SystemExit(2) from None
    except Exception as err:
        status.write(state="failed", stage="training", progress=0.0, error=f"{type(err).__name__}: {err}")
        raise


if __name__ == "__main__":
    main()
