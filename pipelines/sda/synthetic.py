"""`python -m pipelines.sda.synthetic`: writes a synthetic SDA dataset — a face, and sentences spoken to it.

Output (format version 2), in one folder:
  face.png       the full photo the avatar comes from
  clips.npz      audio (concatenated float32), openings and roundings (concatenated), per-clip frame counts, texts
  meta.json      format version, sample rate, fps, crop size, sentence seed
Frames are rendered from these on the fly while training (`dataset.py`), so a dataset stays a few MB.
"""

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core.atomic import atomic_dir
from core.sda.model import SdaConfig
from pipelines.sda.speech_script import random_sentences, speak_clip

FORMAT_VERSION = 2


def default_photo() -> np.ndarray:
    """The shipped default face: NASA's public-domain astronaut portrait, from scikit-image's data."""
    from skimage import data

    return data.astronaut()


def write_dataset(out: Path, photo: np.ndarray, sentences: int, seed: int, cfg: SdaConfig = SdaConfig()) -> Path:
    from core.tts.backends.piper_voice import PiperBackend

    voice = PiperBackend()
    voice.load()
    clips = [
        speak_clip(voice, text, cfg.sample_rate, cfg.fps)
        for text in tqdm(random_sentences(sentences, seed), desc="speaking sentences", unit="clip")
    ]
    with atomic_dir(out) as tmp:  # the dataset appears whole or not at all
        _write(tmp, photo, clips, cfg, seed)
    return out


def _write(tmp: Path, photo: np.ndarray, clips: list, cfg: SdaConfig, seed: int) -> None:
    cv2.imwrite(str(tmp / "face.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    np.savez_compressed(
        tmp / "clips.npz",
        audio=np.concatenate([c.audio for c in clips]),
        openings=np.concatenate([c.openings for c in clips]),
        roundings=np.concatenate([c.roundings for c in clips]),
        frames=np.array([c.openings.size for c in clips]),
        texts=np.array([c.text for c in clips]),
    )
    meta = {"format": FORMAT_VERSION, "sample_rate": cfg.sample_rate, "fps": cfg.fps,
            "height": cfg.height, "width": cfg.width, "seed": seed, "clips": len(clips)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photo", type=Path, help="a face photo (default: the shipped astronaut portrait)")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    photo = default_photo() if args.photo is None else cv2.cvtColor(cv2.imread(str(args.photo)), cv2.COLOR_BGR2RGB)
    print(write_dataset(args.out, photo, args.sentences, args.seed))


if __name__ == "__main__":
    main()
