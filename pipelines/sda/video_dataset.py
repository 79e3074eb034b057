"""Training samples from real video (written by the `sda_dataset` pipeline step): aligned face crops with their
audio, and the full frame the avatar is made from.

Folder (format 2, kind "video"): face.png (a full frame: the avatar's photo), clips.npz (frames (N, H, W, 3)
uint8 concatenated, audio float32 concatenated, per-clip frame counts, texts), meta.json.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from core.sda.face_rig import FaceRig
from core.sda.features import audio_windows, to_tensor
from core.sda.model import SdaConfig
from pipelines.sda.dataset import Face

FORMAT_VERSION = 2


def write_video_dataset(folder: Path, photo: np.ndarray, clips: list[tuple[np.ndarray, np.ndarray, str]],
                        cfg: SdaConfig) -> None:
    """`clips`: (frames (T, H, W, 3) uint8, audio float32 of T frames' length, text)."""
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "face.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    np.savez_compressed(
        folder / "clips.npz",
        frames=np.concatenate([c[0] for c in clips]),
        audio=np.concatenate([c[1] for c in clips]).astype(np.float32),
        counts=np.array([len(c[0]) for c in clips]),
        texts=np.array([c[2] for c in clips]),
    )
    meta = {"format": FORMAT_VERSION, "kind": "video", "sample_rate": cfg.sample_rate, "fps": cfg.fps,
            "height": cfg.height, "width": cfg.width, "clips": len(clips)}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))


class VideoClips(Dataset):
    def __init__(self, folder: Path, cfg: SdaConfig, window: int = 16, samples: int = 10_000):
        meta = json.loads((folder / "meta.json").read_text())
        if (meta["fps"], meta["sample_rate"], meta["height"], meta["width"]) != (cfg.fps, cfg.sample_rate, cfg.height, cfg.width):
            raise ValueError(f"{folder} was made for another frame rate, sample rate or crop size than the model")
        data = np.load(folder / "clips.npz")
        spf = cfg.samples_per_frame
        self.clips = []
        f = 0
        frames, audio = data["frames"], data["audio"]  # read once (see pipelines.sda.dataset)
        for count in data["counts"]:
            if count >= window:
                self.clips.append((frames[f : f + count], audio[f * spf : (f + count) * spf]))
            f += count
        if not self.clips:
            raise ValueError(f"{folder} has no clip of at least {window} frames")
        photo = cv2.cvtColor(cv2.imread(str(folder / "face.png")), cv2.COLOR_BGR2RGB)
        self.rig = FaceRig.from_photo(photo, cfg.height, cfg.width)
        self.face = Face.of(self.rig)
        self.cfg, self.window, self.samples = cfg, window, samples

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng(index + 7919 * torch.initial_seed() % 100_003)
        frames, audio = self.clips[rng.integers(len(self.clips))]
        start = int(rng.integers(0, len(frames) - self.window + 1))
        images = torch.stack([to_tensor(f) for f in frames[start : start + self.window]])
        windows = audio_windows(audio, len(frames), self.cfg)[start : start + self.window]
        face = self.face
        return {"still": face.still, "geometry": face.geometry, "lips": face.lips, "frames": images,
                "windows": torch.from_numpy(windows)}
