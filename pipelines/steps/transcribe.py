"""Step 4, transcribe: two ASR passes over every clip, with word timings and confidences.

The first pass is Whisper (beam search over the whole clip); the second opinion is Whisper again with greedy
decoding. Where the two disagree, or confidence is low, the review step asks a person. (The second round, with
the ASR fine-tuned on this dataset, is the `retranscribe` step.)
Output: `transcripts.json`, {clip id: {text, words, confidence, second, second_by}}.
"""

import soundfile as sf
from tqdm import tqdm

from core.asr.backends.base_backend import Word
from core.atomic import write_json
from pipelines.options import Options
from pipelines.workspace import Workspace

NEEDS = ["clip"]


def key(ws: Workspace, opts: Options) -> dict:
    return {}


def _text(words: list[Word]) -> str:
    return " ".join(w.text.strip() for w in words).strip()


def run(ws: Workspace, opts: Options) -> dict:
    from core.asr.backends.whisper_ct2 import WhisperCt2Backend

    clips = ws.require("clip")["clips"]
    first = WhisperCt2Backend(final_beam_size=5)
    first.load()
    second, second_by = WhisperCt2Backend(final_beam_size=1), "whisper greedy"
    second.load()
    transcripts = {}
    for clip in tqdm(clips, desc="transcribing", unit="clip"):
        audio, _ = sf.read(ws.root / clip["audio"], dtype="float32")
        words = first.transcribe(audio, "", "en")
        other = second.transcribe(audio, "", "en")
        transcripts[clip["id"]] = {
            "text": _text(words),
            "words": [{"text": w.text.strip(), "start_s": round(w.start_s, 3), "end_s": round(w.end_s, 3),
                       "confidence": round(w.confidence, 4)} for w in words],
            "confidence": round(sum(w.confidence for w in words) / len(words), 4) if words else 0.0,
            "second": _text(other),
            "second_by": second_by,
        }
    write_json(ws.root / "transcripts.json", transcripts)
    return {"clips": len(transcripts), "second_by": second_by,
            "empty": sum(not t["text"] for t in transcripts.values())}
