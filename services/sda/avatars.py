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
from core.sda.features import to_image, to_tensor
from core.sda.model import Generator, Identity

log = logging.getLogger(__name__)


@dataclass
class Tone:
    """Brings a generated crop to the photo's colour and contrast: per channel, a gain and an offset that map the
    generator's face at rest onto the photo's over the lower face; a greyscale photo gets grey crops."""

    gain: np.ndarray  # (3,)
    offset: np.ndarray  # (3,)
    grey: bool

    @classmethod
    def fit(cls, generated: np.ndarray, rig: FaceRig) -> "Tone":
        lower_face = rig.mask > 0.5
        photo = rig.still.astype(np.float32)[lower_face]
        made = generated.astype(np.float32)[lower_face]
        gain = np.clip(photo.std(axis=0) / np.maximum(made.std(axis=0), 1.0), 0.5, 2.0)
        offset = photo.mean(axis=0) - gain * made.mean(axis=0)
        spread = np.ptp(rig.photo.astype(np.int16), axis=2)
        return cls(gain.astype(np.float32), offset.astype(np.float32), bool(np.percentile(spread, 99) <= 8))

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        toned = crop.astype(np.float32) * self.gain + self.offset
        if self.grey:
            toned[:] = toned @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
        return np.clip(toned, 0, 255).round().astype(np.uint8)


@dataclass
class Avatar:
    avatar_id: str
    generator: Generator
    rig: FaceRig
    identity: Identity
    tone: Tone

    @property
    def device(self) -> torch.device:
        return self.identity.code.device

    @classmethod
    def build(cls, avatar_id: str, generator: Generator, photo: np.ndarray) -> "Avatar":
        cfg = generator.cfg
        rig = FaceRig.from_photo(photo, cfg.height, cfg.width)
        device = next(generator.parameters()).device
        with torch.no_grad():
            identity = generator.encode_identity(to_tensor(rig.still)[None].to(device))
            silence = torch.zeros(1, 1, cfg.window_samples, device=device)
            noise = torch.zeros(1, 1, cfg.noise_dim, device=device)
            rest, _ = generator(identity, silence, generator.initial_state(1, device), noise)
        return cls(avatar_id, generator, rig, identity, Tone.fit(to_image(rest[0, 0]), rig))


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
