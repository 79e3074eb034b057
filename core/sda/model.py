"""The SDA generator and its three discriminators (frame, sequence, sync), after the paper's description, with
one change: the generator predicts motion, not pixels.

Generator: an audio encoder over a 0.2 s raw-audio window centred on each video frame, a temporal GRU over the
audio codes, a noise GRU for spontaneous motion; from them, each frame's mouth pose (opening, rounding) and a small
texture of the inside of the mouth. `core.sda.face_warp` turns them into the frame: the photo's own pixels warped
to the pose, the texture between the lips. The discriminators judge those rendered frames. A checkpoint carries
its `SdaConfig`, so a service rebuilds the model from the file alone.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn

from core.sda.face_warp import MAX_OPENING, TEETH_RGB


@dataclass(frozen=True)
class SdaConfig:
    height: int = 128
    width: int = 96
    fps: int = 25
    sample_rate: int = 16000
    audio_window_s: float = 0.2
    channels: int = 16  # width of the networks; 16 ≈ 6M generator parameters (CPU), 64 for a GPU model
    cavity_height: int = 16  # the inside of the mouth's texture
    cavity_width: int = 32
    audio_dim: int = 128
    temporal_dim: int = 128
    noise_dim: int = 16

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.audio_window_s))

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    def to_dict(self) -> dict:
        return asdict(self)


# The resolution ladder: "cpu" renders one session at well over 100 frames a second on two cores; "gpu" doubles
# the crop's sides and triples the networks' width, for a GPU to train and serve. A generator file carries its
# config, so a service runs whichever size the avatar was trained at.
SIZES = {
    "cpu": SdaConfig(),
    "gpu": SdaConfig(height=256, width=192, channels=48),
}


def _down(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 4, 2, 1)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class AudioEncoder(nn.Module):
    """(N, window_samples) raw audio → (N, out_dim)."""

    def __init__(self, cfg: SdaConfig, out_dim: int):
        super().__init__()
        c = cfg.channels
        self.net = nn.Sequential(
            nn.Conv1d(1, 2 * c, 160, 40, 60), nn.BatchNorm1d(2 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv1d(2 * c, 4 * c, 5, 2, 2), nn.BatchNorm1d(4 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv1d(4 * c, 8 * c, 5, 2, 2), nn.BatchNorm1d(8 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv1d(8 * c, 8 * c, 5, 2, 2), nn.BatchNorm1d(8 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool1d(10),
        )
        self.out = nn.Linear(8 * c * 10, out_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(windows.unsqueeze(1)).flatten(1))


@dataclass
class Motion:
    """What the generator makes of each frame's audio: the mouth's pose and the inside of the mouth."""

    opening: torch.Tensor  # (B, T): 0 closed … 1 wide open (up to 1.2)
    rounding: torch.Tensor  # (B, T): −1 spread … 1 rounded
    cavity: torch.Tensor  # (B, T, 3, cavity_height, cavity_width) in [-1, 1]: teeth, tongue and the dark between,
    # painted from two maps the generator makes: how lit (the lips' colour, in shadow to lit: the cavity, the tongue)
    # and how much tooth, so the inside of a mouth has only the colours of a mouth


_TEETH = torch.tensor(TEETH_RGB).float()[:, None, None] / 127.5  # 0-2, as the lips' colour is given


class Generator(nn.Module):
    """Audio → the mouth's motion. It paints no face: the face is the photo's own pixels, moved by
    `core.sda.face_warp` to the pose it predicts, with only the inside of the mouth drawn from its texture (coloured
    from the person's lips, which is all it knows of the face)."""

    NOISE_STD = 0.33  # spread of the noise that drives the noise GRU (spontaneous motion)

    def __init__(self, cfg: SdaConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.audio = AudioEncoder(cfg, cfg.audio_dim)
        self.temporal = nn.GRU(cfg.audio_dim, cfg.temporal_dim, batch_first=True)
        self.noise = nn.GRU(cfg.noise_dim, cfg.noise_dim, batch_first=True)
        self.pose = nn.Sequential(nn.Linear(cfg.temporal_dim + cfg.noise_dim, 64), nn.LeakyReLU(0.2), nn.Linear(64, 2))
        self._seed = (4 * c, cfg.cavity_height // 4, cfg.cavity_width // 4)
        self.cavity_seed = nn.Linear(cfg.temporal_dim + 3, 4 * c * self._seed[1] * self._seed[2])
        self.cavity = nn.Sequential(  # no batch norm: a texture made one frame at a time must not depend on a batch
            nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c, 2, 3, 1, 1), nn.Sigmoid())

    def initial_state(self, batch: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        return (torch.zeros(1, batch, cfg.temporal_dim, device=device), torch.zeros(1, batch, cfg.noise_dim, device=device))

    def forward(
        self,
        lips: torch.Tensor,
        windows: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[Motion, tuple[torch.Tensor, torch.Tensor]]:
        """lips (B, 3): the person's lip colour in [-1, 1]; windows (B, T, window_samples) → the motion of T frames,
        and the GRU state to carry on."""
        b, t, _ = windows.shape
        cfg = self.cfg
        if state is None:
            state = self.initial_state(b, windows.device)
        audio_codes = self.audio(windows.reshape(b * t, -1)).reshape(b, t, -1)
        temporal, h_audio = self.temporal(audio_codes, state[0])
        if noise is None:
            noise = torch.randn(b, t, cfg.noise_dim, device=windows.device) * self.NOISE_STD
        motion, h_noise = self.noise(noise, state[1])
        pose = self.pose(torch.cat([temporal, motion], dim=-1))
        opening = MAX_OPENING * torch.sigmoid(pose[..., 0])
        rounding = torch.tanh(pose[..., 1])
        seed = self.cavity_seed(torch.cat([temporal, lips[:, None].expand(b, t, 3)], dim=-1))
        shade, teeth = self.cavity(seed.reshape(b * t, *self._seed)).unbind(1)
        lip = lips.repeat_interleave(t, dim=0)[:, :, None, None] + 1  # 0-2
        inside = (1 - teeth[:, None]) * lip * (0.05 + 1.2 * shade[:, None]) + teeth[:, None] * _TEETH.to(lips)
        cavity = (inside - 1).clamp(-1, 1).reshape(b, t, 3, cfg.cavity_height, cfg.cavity_width)
        return Motion(opening, rounding, cavity), (h_audio, h_noise)


class FrameDiscriminator(nn.Module):
    """Is this frame, next to the still, a real frame of that person? (realism and identity)"""

    def __init__(self, cfg: SdaConfig):
        super().__init__()
        c = cfg.channels
        self.net = nn.Sequential(
            _down(6, c, norm=False), _down(c, 2 * c), _down(2 * c, 4 * c), _down(4 * c, 8 * c), nn.Conv2d(8 * c, 1, 3, 1, 1)
        )

    def forward(self, frames: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
        """frames (N, 3, H, W), still (N, 3, H, W) → logits (N,)"""
        return self.net(torch.cat([frames, still], dim=1)).mean(dim=(1, 2, 3))


class _FrameEncoder(nn.Module):
    def __init__(self, cfg: SdaConfig, in_channels: int, out_dim: int):
        super().__init__()
        c = cfg.channels
        self.net = nn.Sequential(
            _down(in_channels, c, norm=False), _down(c, 2 * c), _down(2 * c, 4 * c), _down(4 * c, 8 * c),
            nn.AdaptiveAvgPool2d(1),
        )
        self.out = nn.Linear(8 * c, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(x).flatten(1))


class SequenceDiscriminator(nn.Module):
    """Is this clip, with its audio, a real video? (temporal realism: smooth motion, plausible dynamics)"""

    def __init__(self, cfg: SdaConfig):
        super().__init__()
        self.frames = _FrameEncoder(cfg, 3, 128)
        self.audio = AudioEncoder(cfg, 64)
        self.gru = nn.GRU(128 + 64, 128, batch_first=True)
        self.out = nn.Linear(128, 1)

    def forward(self, frames: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 3, H, W), windows (B, T, S) → logits (B,)"""
        b, t = frames.shape[:2]
        f = self.frames(frames.flatten(0, 1)).reshape(b, t, -1)
        a = self.audio(windows.flatten(0, 1)).reshape(b, t, -1)
        out, _ = self.gru(torch.cat([f, a], dim=-1))
        return self.out(out[:, -1]).squeeze(1)


class SyncDiscriminator(nn.Module):
    """Do these 5 frames of the lower face match this 0.2 s of audio?"""

    FRAMES = 5

    def __init__(self, cfg: SdaConfig):
        super().__init__()
        self.video = _FrameEncoder(cfg, 3 * self.FRAMES, 128)
        self.audio = AudioEncoder(cfg, 128)
        self.out = nn.Sequential(nn.Linear(128, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))

    def forward(self, frames: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """frames (B, 5, 3, H, W) (the lower half is used), window (B, S) centred on the middle frame → logits (B,)"""
        lower = frames[:, :, :, frames.shape[3] // 2 :, :].flatten(1, 2)
        return self.out((self.video(lower) - self.audio(window)).abs()).squeeze(1)
