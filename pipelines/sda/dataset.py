"""Training samples from a synthetic dataset: random windows of frames, rendered on the fly, with their audio.

Each sample is spoken by one variant of the set's face: as photographed, mirrored, in grey, with its colours
shifted, or wider or narrower, so that the generator (which sees the face only through its warp and its lip
colour) meets faces of other shapes and colours."""

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from core.sda.face_rig import FaceRig
from core.sda.features import audio_windows, lip_code, to_tensor
from core.sda.model import SdaConfig
from pipelines.sda.mouth_render import MouthRenderer
from pipelines.sda.synthetic import FORMAT_VERSION


@dataclass
class Clip:
    audio: np.ndarray
    openings: np.ndarray
    roundings: np.ndarray
    text: str


@dataclass
class Face:
    """One face of the set, ready to train on: its crop, its warp, and the renderer of its target frames."""

    still: torch.Tensor
    geometry: dict[str, torch.Tensor]
    lips: torch.Tensor
    renderer: MouthRenderer

    @classmethod
    def of(cls, rig: FaceRig) -> "Face":
        renderer = MouthRenderer.fit(rig.still, rig.points)
        return cls(to_tensor(rig.still), renderer.tensors, lip_code(renderer.geometry.lip_color), renderer)


def variants(photo: np.ndarray) -> list[np.ndarray]:
    """The photo, mirrored, in grey, warmer and cooler, 15% wider and narrower."""
    h, w = photo.shape[:2]
    grey = cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    tint = lambda gains: np.clip(photo.astype(np.float32) * gains, 0, 255).astype(np.uint8)
    return [photo, np.ascontiguousarray(photo[:, ::-1]), grey, tint([1.12, 1.0, 0.85]), tint([0.88, 1.0, 1.12]),
            cv2.resize(photo, (int(w * 1.15), h), interpolation=cv2.INTER_AREA),
            cv2.resize(photo, (int(w * 0.87), h), interpolation=cv2.INTER_AREA)]


class SyntheticClips(Dataset):
    def __init__(self, folder: Path, cfg: SdaConfig, window: int = 16, samples: int = 10_000):
        meta = json.loads((folder / "meta.json").read_text())
        if meta["format"] != FORMAT_VERSION:
            raise ValueError(f"{folder} is a format {meta['format']} synthetic set; make it again with this version")
        if meta["fps"] != cfg.fps or meta["sample_rate"] != cfg.sample_rate:
            raise ValueError(f"{folder} was made for {meta['fps']} fps / {meta['sample_rate']} Hz")
        data = np.load(folder / "clips.npz")
        spf = cfg.samples_per_frame
        self.clips: list[Clip] = []
        a = o = 0
        # each name read once: an archive decompresses an array at every read, and a slice keeps its whole array
        audio, openings, roundings = data["audio"], data["openings"], data["roundings"]
        for frames, text in zip(data["frames"], data["texts"]):
            self.clips.append(Clip(audio[a : a + frames * spf], openings[o : o + frames], roundings[o : o + frames],
                                   str(text)))
            a += frames * spf
            o += frames
        self.clips = [c for c in self.clips if c.openings.size >= window]
        photo = cv2.cvtColor(cv2.imread(str(folder / "face.png")), cv2.COLOR_BGR2RGB)
        self.rig = FaceRig.from_photo(photo, cfg.height, cfg.width)
        self.faces = [Face.of(FaceRig.from_photo(v, cfg.height, cfg.width)) for v in variants(photo)]
        self.cfg = cfg
        self.window = window
        self.samples = samples

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng(index + 7919 * torch.initial_seed() % 100_003)
        clip = self.clips[rng.integers(len(self.clips))]
        start = int(rng.integers(0, max(clip.openings.size - self.window, 0) + 1))
        face = self.faces[0 if rng.random() < 0.4 else rng.integers(len(self.faces))]
        openings = clip.openings[start : start + self.window]
        roundings = clip.roundings[start : start + self.window]
        frames = torch.stack([to_tensor(f) for f in face.renderer.render_many(openings, roundings)])
        windows = audio_windows(clip.audio, clip.openings.size, self.cfg)[start : start + self.window]
        return {"still": face.still, "geometry": face.geometry, "lips": face.lips, "frames": frames,
                "windows": torch.from_numpy(windows), "openings": torch.from_numpy(openings.copy()),
                "roundings": torch.from_numpy(roundings.copy())}
