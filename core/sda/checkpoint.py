"""The generator file the SDA service loads: weights, model config and the avatar's face, all in one."""

from pathlib import Path

import cv2
import numpy as np
import torch

from core.atomic import atomic_path
from core.sda.model import Generator, SdaConfig

FORMAT_VERSION = 2  # 2: the generator predicts motion (core.sda.face_warp renders it)
# The generator that ships: the default avatar, and where fine-tuning starts.
DEFAULT_GENERATOR = Path(__file__).parent / "checkpoints" / "default.pt"


def save_generator(path: Path, generator: Generator, photo: np.ndarray) -> Path:
    ok, png = cv2.imencode(".png", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    assert ok
    with atomic_path(path) as partial:
        torch.save(
            {"format": FORMAT_VERSION, "config": generator.cfg.to_dict(),
             "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in generator.state_dict().items()},
             "photo_png": png.tobytes()},
            partial,
        )
    return path


def load_generator(path: Path, device: str = "cpu") -> tuple[Generator, np.ndarray]:
    """The generator (eval mode, float32) and the avatar's full photo (RGB)."""
    data = torch.load(path, map_location=device, weights_only=True)
    if data.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path} is not an SDA generator file of format {FORMAT_VERSION}")
    generator = Generator(SdaConfig(**data["config"]))
    generator.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()})
    photo = cv2.cvtColor(cv2.imdecode(np.frombuffer(data["photo_png"], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return generator.to(device).eval(), photo
