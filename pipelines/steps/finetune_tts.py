"""Step 7, finetune_tts: a Coqui VITS voice of the target, trained on the clips and their reviewed transcripts.

The clips are cut again from the source at 22,050 Hz into an LJSpeech folder (`tts_data/`), then
`pipelines.tts.train` trains — fine-tuning `--tts-restore` (a Coqui VITS model.pth with its config.json beside
it) when given, else from scratch. An interrupted run on the same inputs resumes. The voice lands in
`models/voice/` (config.json + model.pth), which the TTS service loads (TTS_BACKEND=coqui, or as a named voice).
"""

import json
import shutil

import soundfile as sf

from core.atomic import atomic_dir
from pipelines.ffmpeg import extract_audio
from pipelines.options import Options
from pipelines.tts.ljspeech import SAMPLE_RATE, Utterance, write_ljspeech
from pipelines.workspace import PipelineError, Workspace

NEEDS = ["create_dataset", "clip", "review"]
VOICE = "models/voice"


def key(ws: Workspace, opts: Options) -> dict:
    return {"restore": str(opts.tts_restore) if opts.tts_restore else None, "size": opts.tts_size,
            "epochs": opts.tts_epochs}


def _utterances(ws: Workspace):
    final = json.loads((ws.root / "transcripts_final.json").read_text())
    sources = {s["id"]: s for s in ws.require("create_dataset")["sources"]}
    cache = ws.root / "audio22k"
    cache.mkdir(exist_ok=True)
    loaded = {}
    for clip in ws.require("clip")["clips"]:
        text = final.get(clip["id"])
        if not text:
            continue
        source = clip["source"]
        if source not in loaded:
            wav = cache / f"{source}.wav"
            if not wav.is_file():
                extract_audio(ws.root / sources[source]["media"], wav, SAMPLE_RATE)
            loaded[source], _ = sf.read(wav, dtype="float32")
        audio = loaded[source][int(clip["start_s"] * SAMPLE_RATE) : int(clip["end_s"] * SAMPLE_RATE)]
        yield Utterance(clip["id"], text, audio, SAMPLE_RATE)


def run(ws: Workspace, opts: Options) -> dict:
    from pipelines.tts.train import train

    with atomic_dir(ws.root / "tts_data") as data:
        count = write_ljspeech(data, _utterances(ws))
    if count == 0:
        raise PipelineError("no clip has a transcript to train the voice on")
    run_dir, resume = ws.run_dir("tts", ws.inputs(NEEDS, key(ws, opts)), opts.force)
    voice = train(ws.root / "tts_data", run_dir, size=opts.tts_size, epochs=opts.tts_epochs,
                  batch_size=min(16, count), restore=opts.tts_restore, resume=resume)
    with atomic_dir(ws.root / VOICE) as target:
        for item in voice.iterdir():
            shutil.copy(item, target / item.name)
    return {"voice": VOICE, "utterances": count, "size": opts.tts_size, "epochs": opts.tts_epochs,
            "from": str(opts.tts_restore or "scratch")}
