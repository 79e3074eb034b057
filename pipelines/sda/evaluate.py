"""`python -m pipelines.sda.evaluate`: how well a generator animates held-out sentences.

Prints, over sentences no training saw:
- mouth correlation: Pearson r between the lip gap measured on generated frames and the target opening;
- lower-face L1, PSNR and SSIM against the target frames;
- identity: SSIM of the upper face to the still;
- LMD: mean distance (pixels) of the 20 mouth landmarks, generated vs target, same landmark model on both.
"""

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from core.sda import face_warp
from core.sda.checkpoint import load_generator
from core.sda.face_rig import OUTER_LIPS, FaceRig, landmarks
from core.sda.features import audio_windows, lip_code, to_image, to_tensor
from core.sda.model import Generator
from pipelines.sda.mouth_render import MouthRenderer
from pipelines.sda.speech_script import random_sentences, speak_clip

HELD_OUT_SEED = 424242  # training sets use small seeds; this one is kept for evaluation


@dataclass
class Scores:
    mouth_correlation: float
    lower_l1: float
    lower_psnr: float
    lower_ssim: float
    identity_ssim: float
    lmd: float
    frames: int


def mouth_points(frame: np.ndarray, face_box) -> np.ndarray:
    return landmarks(frame, face_box)[OUTER_LIPS.start : 68]


def lip_gap(points: np.ndarray) -> float:
    """Inner-lip gap in pixels, from the 20 mouth landmarks (48-67)."""
    return float(points[[17, 18, 19], 1].mean() - points[[13, 14, 15], 1].mean())


@torch.no_grad()
def animate(generator: Generator, renderer: MouthRenderer, audio: np.ndarray, frames: int) -> list[np.ndarray]:
    """The still, moved to the poses the generator makes of `audio`, the inside of its mouth painted in."""
    cfg = generator.cfg
    geometry = renderer.geometry
    windows = torch.from_numpy(audio_windows(audio, frames, cfg))[None]
    motion, _ = generator(lip_code(geometry.lip_color)[None], windows, noise=torch.zeros(1, frames, cfg.noise_dim))
    geo = {k: v.expand(frames, *v.shape) for k, v in renderer.tensors.items()}
    still = to_tensor(renderer.still)[None].expand(frames, -1, -1, -1)
    out = face_warp.render(still, geo, motion.opening[0], motion.rounding[0], motion.cavity[0])
    return [to_image(f) for f in out]


def evaluate(path: Path, sentences: int = 12, seed: int = HELD_OUT_SEED) -> Scores:
    from core.tts.backends.piper_voice import PiperBackend

    generator, photo = load_generator(path)
    cfg = generator.cfg
    rig = FaceRig.from_photo(photo, cfg.height, cfg.width)
    renderer = MouthRenderer.fit(rig.still, rig.points)
    box = (*rig.points.min(axis=0), *rig.points.max(axis=0))
    half = cfg.height // 2
    voice = PiperBackend()
    voice.load()
    gaps, targets, l1, psnr, ssim, identity, lmd = [], [], [], [], [], [], []
    for text in random_sentences(sentences, seed):
        clip = speak_clip(voice, text, cfg.sample_rate, cfg.fps)
        generated = animate(generator, renderer, clip.audio, clip.openings.size)
        for opening, rounding, fake in zip(clip.openings, clip.roundings, generated):
            real = renderer.render(opening, rounding)
            fake_mouth, real_mouth = mouth_points(fake, box), mouth_points(real, box)
            gaps.append(lip_gap(fake_mouth))
            targets.append(opening)
            lmd.append(float(np.linalg.norm(fake_mouth - real_mouth, axis=1).mean()))
            lf, lr = fake[half:].astype(np.float32), real[half:].astype(np.float32)
            l1.append(float(np.abs(lf - lr).mean() / 255))
            psnr.append(peak_signal_noise_ratio(real[half:], fake[half:], data_range=255))
            ssim.append(structural_similarity(real[half:], fake[half:], channel_axis=2, data_range=255))
            identity.append(structural_similarity(rig.still[:half], fake[:half], channel_axis=2, data_range=255))
    gaps_a, targets_a = np.array(gaps), np.array(targets)
    correlation = float(np.corrcoef(gaps_a, targets_a)[0, 1]) if gaps_a.std() > 1e-6 else 0.0
    return Scores(correlation, float(np.mean(l1)), float(np.mean(psnr)), float(np.mean(ssim)),
                  float(np.mean(identity)), float(np.mean(lmd)), len(gaps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generator", type=Path)
    parser.add_argument("--sentences", type=int, default=12)
    parser.add_argument("--json", type=Path, help="also write the scores here")
    args = parser.parse_args()
    scores = evaluate(args.generator, args.sentences)
    for name, value in asdict(scores).items():
        print(f"{name:>18}: {value:.4f}" if isinstance(value, float) else f"{name:>18}: {value}")
    if args.json:
        args.json.write_text(json.dumps(asdict(scores), indent=2))


if __name__ == "__main__":
    main()
