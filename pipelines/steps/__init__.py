"""The pipeline's steps in order, and how one is run: skipped when its inputs are unchanged, else run whole."""

import logging
import time
from types import ModuleType

from pipelines.steps import (
    clip,
    create_dataset,
    diarize,
    finetune_asr,
    finetune_llm,
    finetune_tts,
    publish,
    retranscribe,
    review,
    sda_dataset,
    train_sda,
    transcribe,
)
from pipelines.options import Options
from pipelines.workspace import Workspace

log = logging.getLogger(__name__)

STEPS: dict[str, ModuleType] = {
    "create_dataset": create_dataset,
    "diarize": diarize,
    "clip": clip,
    "transcribe": transcribe,
    "review": review,
    "finetune_asr": finetune_asr,
    "retranscribe": retranscribe,
    "finetune_tts": finetune_tts,
    "finetune_llm": finetune_llm,
    "sda_dataset": sda_dataset,
    "train_sda": train_sda,
    "publish": publish,
}


def run_step(name: str, ws: Workspace, opts: Options) -> dict:
    """Runs one step unless it already ran on the same inputs (then its manifest is returned as it is)."""
    inputs = ws.inputs(STEPS[name].NEEDS, STEPS[name].key(ws, opts))
    done = ws.manifest(name)
    if done and done.get("inputs") == inputs and not opts.force:
        log.info("%s: up to date, skipped", name)
        return done
    for needed in STEPS[name].NEEDS:
        ws.require(needed)
    ws.manifest_path(name).unlink(missing_ok=True)
    started = time.monotonic()
    fields = STEPS[name].run(ws, opts)
    manifest = ws.finish(name, inputs, seconds=round(time.monotonic() - started, 1), **fields)
    summary = ", ".join(f"{k} {v}" for k, v in fields.items() if isinstance(v, int | float | str) and k != "seconds")
    log.info("%s: done in %.1f s%s", name, manifest["seconds"], f" ({summary})" if summary else "")
    return manifest
