"""Step 6b, retranscribe: the second transcription round, with the ASR fine-tuned on this dataset.

Every clip is transcribed again by `models/asr.nemo` and compared with its reviewed transcript; where they
differ most, either the transcript or the fine-tuned model is wrong, and `review/second_round.csv` ranks those
clips for a person. What they correct goes into `corrections.csv` as before (and re-runs what depends on it).
Output: `review/second_round.csv`.
"""

import json

import soundfile as sf
from tqdm import tqdm

from pipelines.asr.ctc_recipe import ctc_text
from pipelines.steps.finetune_asr import MODEL
from pipelines.options import Options
from pipelines.steps.review import disagreement, write_csv
from pipelines.workspace import Workspace

NEEDS = ["clip", "review", "finetune_asr"]


def key(ws: Workspace, opts: Options) -> dict:
    return {}


def run(ws: Workspace, opts: Options) -> dict:
    from core.asr.backends.nemo_ctc import NemoBackend

    final = json.loads((ws.root / "transcripts_final.json").read_text())
    asr = NemoBackend(str(ws.root / MODEL), device="cpu")
    asr.load()
    rows = []
    for clip in tqdm(ws.require("clip")["clips"], desc="second transcription round", unit="clip"):
        if clip["id"] not in final:
            continue
        audio, _ = sf.read(ws.root / clip["audio"], dtype="float32")
        heard = " ".join(w.text.strip() for w in asr.transcribe(audio, "", "en")).strip()
        rows.append((disagreement(ctc_text(final[clip["id"]]), heard), clip["id"], final[clip["id"]], heard))
    rows.sort(key=lambda r: -r[0])
    write_csv(ws.root / "review" / "second_round.csv", ["rank", "clip_id", "disagreement", "transcript", "finetuned_asr", "audio"],
               [[i, clip_id, f"{d:.3f}", text, heard, f"clips/{clip_id}.wav"]
                for i, (d, clip_id, text, heard) in enumerate(rows, 1)])
    mean = sum(r[0] for r in rows) / len(rows) if rows else 0.0
    return {"clips": len(rows), "mean_disagreement": round(mean, 3), "most_doubtful": [r[1] for r in rows[:5]]}
