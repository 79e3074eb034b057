"""`python -m pipelines.tts.train`: trains (or fine-tunes) a Coqui VITS voice on an LJSpeech-layout folder.

Coqui's trainer runs the GAN loop (generator + multi-period discriminator), logs to TensorBoard under the run
folder, and keeps resumable checkpoints; at the end the generator alone is exported to `<out>/voice/`
(`config.json` + `model.pth`), the folder the TTS service loads with `TTS_BACKEND=coqui`.
Fine-tuning: `--restore` an earlier voice's `model.pth` (or a Coqui VITS checkpoint); the model's size then
comes from the `config.json` beside it.
"""

import argparse
import logging
from pathlib import Path

import torch

from core.atomic import atomic_path
from pipelines.tts.coqui_compat import use_soundfile
from pipelines.tts.vits_recipe import vits_config

log = logging.getLogger(__name__)

VOICE_CONFIG = "config.json"
VOICE_WEIGHTS = "model.pth"


def _last_run(out: Path) -> Path | None:
    """The newest run folder that holds a checkpoint, for resuming."""
    runs = [p.parent for p in out.glob("vits-*/checkpoint_*.pth")] + [p.parent for p in out.glob("vits-*/best_model*.pth")]
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def train(
    data: Path,
    out: Path,
    size: str = "base",
    epochs: int = 1000,
    batch_size: int = 16,
    eval_size: int = 0,
    restore: Path | None = None,
    resume: bool = True,
) -> Path:
    """Trains and exports; returns the voice folder."""
    from trainer import Trainer, TrainerArgs
    from TTS.tts.datasets import load_tts_samples
    from TTS.tts.models.vits import Vits, VitsArgs

    use_soundfile()
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    config = vits_config(data, out, size, batch_size, epochs, eval_size)
    if restore is not None:
        base = _read_config(restore.parent / VOICE_CONFIG)
        config.model_args = VitsArgs(**{**base.model_args.to_dict(), "init_discriminator": True})
    model = Vits(config)
    config = model.config
    train_samples, eval_samples = load_tts_samples(
        config, eval_split=eval_size > 0, eval_split_size=eval_size
    )
    if not train_samples:
        raise ValueError(f"no utterances in {data / 'metadata.csv'}")
    previous = _last_run(out) if resume else None
    args = TrainerArgs(
        continue_path=str(previous) if previous else "",
        restore_path=str(restore) if restore is not None and previous is None else "",
    )
    trainer = Trainer(
        args, config, str(out), model=model, train_samples=train_samples, eval_samples=eval_samples or None
    )
    trainer.fit()
    return export_voice(model, config, out / "voice")


def _read_config(path: Path):
    from TTS.tts.configs.vits_config import VitsConfig

    config = VitsConfig()
    config.load_json(str(path))
    return config


def export_voice(model, config, folder: Path) -> Path:
    """Writes the generator's weights and its config, atomically, for the TTS service."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("disc.")}
    config.model_args.init_discriminator = False
    config.save_json(str(folder / VOICE_CONFIG))
    with atomic_path(folder / VOICE_WEIGHTS) as partial:  # the weights last: a voice is there once they are
        torch.save({"model": weights}, partial)
    log.info("voice written to %s", folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="LJSpeech-layout folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", default="base", help="base (83M parameters) or tiny (smoke runs)")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-size", type=int, default=0, help="utterances held out for evaluation")
    parser.add_argument("--restore", type=Path, help="fine-tune from this model.pth / Coqui checkpoint")
    parser.add_argument("--no-resume", action="store_true")
    a = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    voice = train(a.data, a.out, a.size, a.epochs, a.batch_size, a.eval_size, a.restore, not a.no_resume)
    print(voice)


if __name__ == "__main__":
    main()
