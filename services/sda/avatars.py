"""The avatars the SDA service can animate: a generator file each, with the face it was trained on."""

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.avatar_bundle import DEFAULT, AvatarBundle, check_avatar_id
from core.errors import BadRequest, NotFound
from core.sda.checkpoint import load_generator
from core.sda.face_rig import FaceError, FaceRig
from core.sda.face_warp import FaceGeometry
from core.sda.features import lip_code
from core.sda.model import Generator

log = logging.getLogger(__name__)


@dataclass
class Avatar:
    avatar_id: str
    generator: Generator
    rig: FaceRig
    lips: torch.Tensor  # (1, 3): the person's lip colour, as the generator takes it

    @property
    def device(self) -> torch.device:
        return self.lips.device

    @classmethod
    def build(cls, avatar_id: str, generator: Generator, photo: np.ndarray) -> "Avatar":
        cfg = generator.cfg
        rig = FaceRig.from_photo(photo, cfg.height, cfg.width)
        device = next(generator.parameters()).device
        lips = lip_code(FaceGeometry.fit(rig.still, rig.points).lip_color)[None].to(device)
        return cls(avatar_id, generator, rig, lips)


class AvatarBook:
    """The default avatar from `default_path`, plus `<avatars_dir>/<id>/generator.pt` for each made avatar,
    each on `device`."""

    def __init__(self, default_path: str, avatars_dir: str, device: str = "cpu"):
        self._default_path = Path(default_path)
        self._device = device
        self._dir = Path(avatars_dir) if avatars_dir else None
        self._loaded: dict[str, Avatar] = {}
        self._lock = threading.Lock()

    def load_default(self) -> Avatar:
        generator, photo = load_generator(self._default_path, self._device)
        avatar = Avatar.build(DEFAULT, generator, photo)
        self._loaded[DEFAULT] = avatar
        return avatar

    def ids(self) -> list[str]:
        return [DEFAULT, *(AvatarBundle.published(self._dir) if self._dir else [])]

    def get(self, avatar_id: str) -> Avatar:
        avatar_id = avatar_id or DEFAULT
        with self._lock:
            if avatar_id in self._loaded:
                if avatar_id == DEFAULT or AvatarBundle.at(self._dir, avatar_id).is_published():
                    return self._loaded[avatar_id]
                del self._loaded[avatar_id]  # withdrawn or removed since: nothing of it is served
                log.info("forgot avatar %s: its bundle is gone", avatar_id)
            path = AvatarBundle.at(self._dir, avatar_id).generator if self._dir else check_avatar_id(avatar_id) and None
            if path is None or not path.is_file():
                raise NotFound(f"unknown avatar {avatar_id!r}; available: {', '.join(self.ids())}")
            generator, photo = load_generator(path, self._device)
            self._loaded[avatar_id] = Avatar.build(avatar_id, generator, photo)
            log.info("loaded avatar %s", avatar_id)
            return self._loaded[avatar_id]

    def from_photo(self, photo: np.ndarray) -> Avatar:
        """A one-off avatar: the default generator animating another face (a fine-tuned avatar looks better)."""
        try:
            return Avatar.build("photo", self._loaded[DEFAULT].generator, photo)
        except FaceError as err:
            raise BadRequest(str(err)) from None


def choose_device(setting: str) -> str:
    """The torch device for SDA_DEVICE: auto picks the GPU when torch sees one; cuda without a GPU is an error."""
    available = torch.cuda.is_available()
    if setting == "cuda" and not available:
        raise RuntimeError("SDA_DEVICE=cuda, but torch sees no GPU (a CUDA build of torch and a visible device are needed)")
    device = "cuda" if setting == "cuda" or (setting == "auto" and available) else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"{torch.get_num_threads()} CPU threads"
    log.info("SDA runs on %s (%s; SDA_DEVICE=%s)", device, name, setting)
    return device
