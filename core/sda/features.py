"""The SDA model's view of its inputs, the same in training and serving: images as tensors in [-1, 1], and the
audio window centred on each video frame."""

import numpy as np
import torch

from core.sda.model import SdaConfig


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) → float (3, H, W) in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """float (3, H, W) in [-1, 1] → RGB uint8 (H, W, 3)."""
    return ((tensor.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def audio_windows(audio: np.ndarray, frames: int, cfg: SdaConfig, start: int = 0) -> np.ndarray:
    """(frames, window_samples): the audio window centred on each of frames [start, start + frames), zeros past
    the ends of `audio`."""
    half = cfg.window_samples // 2
    spf = cfg.samples_per_frame
    padded = np.pad(audio, (half, half + cfg.window_samples + max(0, (start + frames) * spf - audio.size)))
    centers = (np.arange(start, start + frames) * spf + spf // 2) + half
    index = centers[:, None] - half + np.arange(cfg.window_samples)[None, :]
    return padded[index].astype(np.float32)


def lip_code(lip_color: np.ndarray) -> torch.Tensor:
    """The person's lip colour (RGB 0-255) as the generator takes it: (3,) in [-1, 1]."""
    return torch.from_numpy(np.asarray(lip_color, np.float32)) / 127.5 - 1.0
