"""`python -m pipelines.sda.train`: trains the SDA generator against its three discriminators.

One LightningModule: CPU by default, DDP on GPUs with the same script (`--devices N --accelerator gpu`).
TensorBoard logs (losses of all four networks, sample frame strips) go to `<out>/tb`, resumable Lightning
checkpoints to `<out>/checkpoints`, and the generator the service loads to `<out>/generator.pt`.
"""

import argparse
import json
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from core.sda import face_warp
from core.sda.checkpoint import load_generator, save_generator
from core.sda.model import (
    SIZES,
    FrameDiscriminator,
    Generator,
    Motion,
    SdaConfig,
    SequenceDiscriminator,
    SyncDiscriminator,
)
from pipelines.sda.dataset import SyntheticClips
from pipelines.sda.video_dataset import VideoClips


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


class SdaGan(pl.LightningModule):
    def __init__(self, config: dict, lr: float = 2e-4, l1_lower: float = 100.0, l1_full: float = 20.0,
                 w_pose: float = 20.0, w_cavity: float = 400.0, w_frame: float = 1.0, w_sequence: float = 0.2,
                 w_sync: float = 0.8):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        cfg = SdaConfig(**config)
        self.cfg = cfg
        self.generator = Generator(cfg)
        self.frame_d = FrameDiscriminator(cfg)
        self.sequence_d = SequenceDiscriminator(cfg)
        self.sync_d = SyncDiscriminator(cfg)

    def configure_optimizers(self):
        lr = self.hparams.lr
        d_params = [*self.frame_d.parameters(), *self.sequence_d.parameters(), *self.sync_d.parameters()]
        return (
            torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999)),
            torch.optim.Adam(d_params, lr=lr, betas=(0.5, 0.999)),
        )

    def _sync_pairs(self, frames: torch.Tensor, windows: torch.Tensor, k: int):
        n = SyncDiscriminator.FRAMES
        clip = frames[:, k : k + n]
        return clip, windows[:, k + n // 2]

    def render(self, batch: dict, motion: Motion, opening: torch.Tensor | None = None,
               rounding: torch.Tensor | None = None) -> torch.Tensor:
        """The frames the service would show: each sample's still warped to the generated poses (or to `opening`
        and `rounding`), the generated inside of the mouth between the lips."""
        still = batch["still"]
        b, t = motion.opening.shape
        geo = {k: v.repeat_interleave(t, dim=0) for k, v in batch["geometry"].items()}
        opening = motion.opening if opening is None else opening
        rounding = motion.rounding if rounding is None else rounding
        frames = face_warp.render(still.repeat_interleave(t, dim=0), geo, opening.flatten(), rounding.flatten(),
                                  motion.cavity.flatten(0, 1))
        return frames.reshape(b, t, *frames.shape[1:])

    def training_step(self, batch, batch_index):
        opt_g, opt_d = self.optimizers()
        h = self.hparams
        still, real, windows = batch["still"], batch["frames"], batch["windows"]
        b, t = real.shape[:2]
        motion, _ = self.generator(batch["lips"], windows)
        # The discriminators and the frame losses judge the motion; the inside of the mouth learns only from the
        # target's (below): adversarial gradients on a small texture paint it with speckles.
        fake = self.render(batch, Motion(motion.opening, motion.rounding, motion.cavity.detach()))
        stills = still.repeat_interleave(t, dim=0)
        k = int(torch.randint(0, t - SyncDiscriminator.FRAMES + 1, ()))
        real_clip, in_sync = self._sync_pairs(real, windows, k)
        fake_clip, _ = self._sync_pairs(fake, windows, k)
        off_sync = in_sync.roll(1, dims=0) if b > 1 else windows[:, (k + t // 2) % t]

        # Discriminators: real frames / clips / in-sync pairs against generated ones and off-sync pairs.
        d_frame = _bce(self.frame_d(real.flatten(0, 1), stills), True) + _bce(
            self.frame_d(fake.detach().flatten(0, 1), stills), False)
        d_sequence = _bce(self.sequence_d(real, windows), True) + _bce(self.sequence_d(fake.detach(), windows), False)
        d_sync = (_bce(self.sync_d(real_clip, in_sync), True) + 0.5 * _bce(self.sync_d(real_clip, off_sync), False)
                  + 0.5 * _bce(self.sync_d(fake_clip.detach(), in_sync), False))
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_frame + d_sequence + d_sync)
        opt_d.step()

        # Generator: fool all three, and stay close to the target (the lower face weighs most; the mouth's pose,
        # where the training set knows it, directly).
        lower = slice(self.cfg.height // 2, None)
        l1_lower = F.l1_loss(fake[..., lower, :], real[..., lower, :])
        l1_full = F.l1_loss(fake, real)
        pose = cavity = torch.zeros((), device=fake.device)
        if "openings" in batch:
            pose = F.l1_loss(motion.opening, batch["openings"]) + F.l1_loss(motion.rounding, batch["roundings"])
            # the inside of the mouth, on its own: the target's pose, so only the texture differs from the target
            posed = self.render(batch, motion, batch["openings"], batch["roundings"])
            cavity = F.l1_loss(posed[..., lower, :], real[..., lower, :])
        g_frame = _bce(self.frame_d(fake.flatten(0, 1), stills), True)
        g_sequence = _bce(self.sequence_d(fake, windows), True)
        g_sync = _bce(self.sync_d(fake_clip, in_sync), True)
        g_loss = (h.l1_lower * l1_lower + h.l1_full * l1_full + h.w_pose * pose + h.w_cavity * cavity
                  + h.w_frame * g_frame + h.w_sequence * g_sequence + h.w_sync * g_sync)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()

        self.log_dict(
            {"loss/generator": g_loss, "loss/l1_lower": l1_lower, "loss/pose": pose, "loss/cavity": cavity, "loss/frame_d": d_frame,
             "loss/sequence_d": d_sequence, "loss/sync_d": d_sync},
            prog_bar=True, on_step=True,
        )
        if self.global_step % 100 == 0 and isinstance(self.logger, pl.loggers.TensorBoardLogger):
            strip = torch.cat([real[0, :8], fake[0, :8].detach()], dim=0)
            self.logger.experiment.add_images("samples/real_then_generated", (strip + 1) / 2, self.global_step)


def open_dataset(folder: Path, cfg: SdaConfig, window: int, samples: int) -> SyntheticClips | VideoClips:
    """A synthetic set (pipelines.sda.synthetic) or real video clips (the sda_dataset pipeline step)."""
    kind = json.loads((folder / "meta.json").read_text()).get("kind", "synthetic")
    return (VideoClips if kind == "video" else SyntheticClips)(folder, cfg, window=window, samples=samples)


def train(data: Path, out: Path, steps: int, batch_size: int = 8, window: int = 16, size: str = "cpu",
          accelerator: str = "cpu", devices: int = 1, resume: bool = True, seed: int = 0,
          init_from: Path | None = None, callbacks: list | None = None) -> Path:
    """Train for `steps` iterations a generator of `size` (core.sda.model.SIZES); `init_from` starts the generator
    from a generator file instead (fine-tuning: its size is kept)."""
    pl.seed_everything(seed, workers=True)
    cfg = SIZES[size]
    if init_from is not None:
        start, _ = load_generator(init_from)
        cfg = start.cfg
    dataset = open_dataset(data, cfg, window=window, samples=steps * batch_size * devices)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, drop_last=True)
    model = SdaGan(cfg.to_dict())
    if init_from is not None:
        model.generator.load_state_dict(start.state_dict())
    checkpoints = out / "checkpoints"
    last = checkpoints / "last.ckpt"
    trainer = pl.Trainer(
        max_steps=steps * 2,  # Lightning counts each optimizer's step
        accelerator=accelerator,
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=pl.loggers.TensorBoardLogger(out, name="tb"),
        callbacks=[pl.callbacks.ModelCheckpoint(checkpoints, save_last=True, every_n_train_steps=100), *(callbacks or [])],
        log_every_n_steps=min(10, steps),
        enable_progress_bar=True,
        enable_model_summary=False,
    )
    trainer.fit(model, loader, ckpt_path=str(last) if resume and last.exists() else None)
    return save_generator(out / "generator.pt", model.generator.eval(), dataset.rig.photo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder written by pipelines.sda.synthetic or the sda_dataset step")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--window", type=int, default=16, help="frames per training sample")
    parser.add_argument("--size", default="cpu", choices=sorted(SIZES),
                        help="cpu: 128×96 crop, width 16; gpu: 256×192 crop, width 48")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--no-resume", action="store_true")
    args = parser.parse_args()
    path = train(args.data, args.out, args.steps, args.batch_size, args.window, args.size,
                 args.accelerator, args.devices, not args.no_resume)
    print(path)


if __name__ == "__main__":
    main()
