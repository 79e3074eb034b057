"""Training samples from a synthetic dataset: random windows of frames, rendered on the fly, with their audio."""

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from core.sda.face_rig import FaceRig
from core.sda.features import audio_windows, to_tensor
from core.sda.model import SdaConfig
from pipelines.sda.mouth_render import MouthRenderer
from pipelines.sda.synthetic import FORMAT_VERSION


@dataclass
class Clip:
    audio: np.ndarray
    openings: np.ndarray
    roundings: np.ndarray
    text: str


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
        self.renderer = MouthRenderer.fit(self.rig.still, self.rig.points)
        self.still = to_tensor(self.rig.still)
        self.cfg = cfg
        self.window = window
        self.samples = samples

    def __len__(self) -> int:
        return self.samples

    def render(self, clip: Clip, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """frames (T, 3, H, W), windows (T, S), openings (T,) for frames [start, start + count) of `clip`."""
        openings = clip.openings[start : start + count]
        roundings = clip.roundings[start : start + count]
        frames = torch.stack([to_tensor(self.renderer.render(o, r)) for o, r in zip(openings, roundings)])
        windows = audio_windows(clip.audio, clip.openings.size, self.cfg)[start : start + count]
        return frames, torch.from_numpy(windows), torch.from_numpy(openings.copy())

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng(index + 7919 * torch.initial_seed() % 100_003)
        clip = self.clips[rng.integers(len(self.clips))]
        start = int(rng.integers(0, max(clip.openings.size - self.window, 0) + 1))
        frames, windows, openings = self.render(clip, start, self.window)
        return {"still": self.still, "frames": frames, "windows": windows, "openings": openings}
