"""Step 6, finetune_asr: NeMo CTC training on the dataset's clips and reviewed transcripts.

With `--asr-base model.nemo` that model is fine-tuned (its vocabulary kept); without one, a character CTC model
is trained from scratch (`ctc_recipe.py`). Lightning logs to TensorBoard under `runs/asr/`; the result is
`models/asr.nemo`, which the ASR service loads with ASR_BACKEND=nemo and which `transcribe` then uses for its
second transcription round.
"""

import json
from pathlib import Path

import soundfile as sf

from core.atomic import atomic_path
from pipelines.asr.ctc_recipe import ctc_config, ctc_text
from pipelines.options import Options
from pipelines.workspace import PipelineError, Workspace

NEEDS = ["clip", "review"]
MODEL = "models/asr.nemo"


def key(ws: Workspace, opts: Options) -> dict:
    return {"base": str(opts.asr_base) if opts.asr_base else None, "steps": opts.asr_steps,
            "accelerator": opts.accelerator, "devices": opts.devices}


def write_manifest(ws: Workspace, path: Path) -> int:
    final = json.loads((ws.root / "transcripts_final.json").read_text())
    lines = []
    for clip in ws.require("clip")["clips"]:
        text = ctc_text(final.get(clip["id"], ""))
        if not text:
            continue
        audio = ws.root / clip["audio"]
        lines.append(json.dumps({"audio_filepath": str(audio.resolve()), "duration": sf.info(audio).duration,
                                 "text": text}))
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def run(ws: Workspace, opts: Options) -> dict:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger
    from nemo.collections.asr.models import ASRModel, EncDecCTCModel
    from omegaconf import OmegaConf, open_dict

    pl.seed_everything(0)
    run_dir = ws.root / "runs" / "asr"
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = run_dir / "train.json"
    count = write_manifest(ws, manifest)
    if count == 0:
        raise PipelineError("no clip has a transcript to train the ASR on")
    batch = min(8, count)
    trainer = pl.Trainer(max_steps=opts.asr_steps, accelerator=opts.accelerator, devices=opts.devices,
                         logger=TensorBoardLogger(str(run_dir), name="tb"), enable_checkpointing=False,
                         log_every_n_steps=1)
    if opts.asr_base is not None:
        if not opts.asr_base.is_file():
            raise PipelineError(f"ASR base model {opts.asr_base} does not exist")
        model = ASRModel.restore_from(str(opts.asr_base), trainer=trainer)
        train_cfg = dict(ctc_config(str(manifest), batch_size=batch)["train_ds"])
        with open_dict(model.cfg):
            train_cfg["labels"] = list(model.cfg.get("labels") or model.decoder.vocabulary)
            model.cfg.train_ds = OmegaConf.create(train_cfg)
            model.cfg.optim = OmegaConf.create({"name": "adam", "lr": 1e-4})
        model.setup_training_data(model.cfg.train_ds)
        model.setup_optimization(model.cfg.optim)
    else:
        model = EncDecCTCModel(cfg=OmegaConf.create(ctc_config(str(manifest), batch_size=batch)), trainer=trainer)
    trainer.fit(model)
    target = ws.root / MODEL
    with atomic_path(target) as partial:
        model.save_to(str(partial))
    loss = trainer.callback_metrics.get("train_loss")
    return {"model": MODEL, "clips": count, "steps": trainer.global_step, "from": str(opts.asr_base or "scratch"),
            "last_loss": round(float(loss), 4) if loss is not None else None}
