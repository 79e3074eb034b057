"""Step 9b, train_sda: fine-tunes the shipped SDA generator (with its frame, sequence and sync discriminators)
on `sda_data/`, or at `--sda-size gpu` trains the larger generator from the start; Lightning checkpoints and
TensorBoard under `runs/sda/` (an interrupted run on the same inputs resumes); the generator file, carrying the
avatar's photo, lands in `models/generator.pt`."""

import shutil

from core.atomic import atomic_path
from core.sda.checkpoint import DEFAULT_GENERATOR
from pipelines.options import Options
from pipelines.workspace import Workspace

NEEDS = ["sda_dataset"]
GENERATOR = "models/generator.pt"


def key(ws: Workspace, opts: Options) -> dict:
    return {"steps": opts.sda_steps, "size": opts.sda_size, "accelerator": opts.accelerator, "devices": opts.devices}


def run(ws: Workspace, opts: Options) -> dict:
    from pipelines.sda.train import train

    run_dir, resume = ws.run_dir("sda", ws.inputs(NEEDS, key(ws, opts)), opts.force)
    start = DEFAULT_GENERATOR if opts.sda_size == "cpu" else None  # the shipped generator is the cpu size
    generator = train(ws.root / "sda_data", run_dir, steps=opts.sda_steps, batch_size=4, size=opts.sda_size,
                      resume=resume, init_from=start, accelerator=opts.accelerator, devices=opts.devices)
    target = ws.root / GENERATOR
    with atomic_path(target) as partial:
        shutil.copy(generator, partial)
    return {"generator": GENERATOR, "steps": opts.sda_steps, "size": opts.sda_size,
            "from": DEFAULT_GENERATOR.name if start else "scratch"}
