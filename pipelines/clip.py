"""Stage 3, clip: cut the target's speech into 1-8 s clips at pauses, with the face track of each clip's video.

Outputs: `clips/<id>.wav` (16 kHz mono) and, for clips where a face is visible, `faces/<id>.npz` (aligned crops
for the SDA model and their landmarks). Clips with no visible face are kept, marked `"face": false`, for the
audio-only stages.
"""

import numpy as np
import soundfile as sf
from tqdm import tqdm

from core.atomic import atomic_dir
from core.sda.model import SdaConfig
from pipelines.diarize import source_speech_probabilities, target_segments
from pipelines.face_track import track_face
from pipelines.options import Options
from pipelines.speech_regions import RATE, STEP_S, Segment
from pipelines.workspace import PipelineError, Workspace

NEEDS = ["create_dataset", "diarize"]
MIN_S, MAX_S = 1.0, 8.0
JOIN_GAP_S = 0.35  # target segments closer than this become one clip (if it stays under MAX_S)


def key(ws: Workspace, opts: Options) -> dict:
    return {"min_s": MIN_S, "max_s": MAX_S}


def plan_clips(segments: list[Segment], probs: np.ndarray) -> list[Segment]:
    """Joins close segments, splits long ones at their quietest point, drops what stays under MIN_S."""
    joined: list[Segment] = []
    for seg in segments:
        if joined and seg.start_s - joined[-1].end_s < JOIN_GAP_S and seg.end_s - joined[-1].start_s <= MAX_S:
            joined[-1] = Segment(joined[-1].start_s, seg.end_s)
        else:
            joined.append(seg)
    out: list[Segment] = []
    pending = list(reversed(joined))
    while pending:
        seg = pending.pop()
        if seg.duration_s <= MAX_S:
            if seg.duration_s >= MIN_S:
                out.append(seg)
            continue
        # the quietest 32 ms window in the middle part (at least MIN_S from either end)
        a, b = int((seg.start_s + MIN_S) / STEP_S), int((seg.end_s - MIN_S) / STEP_S)
        cut = (a + int(np.argmin(probs[a:b]))) * STEP_S if b > a else (seg.start_s + seg.end_s) / 2
        pending += [Segment(cut, seg.end_s), Segment(seg.start_s, cut)]
    return out


def run(ws: Workspace, opts: Options) -> dict:
    sources = {s["id"]: s for s in ws.require("create_dataset")["sources"]}
    cfg = SdaConfig()
    clips = []
    with atomic_dir(ws.root / "clips") as clip_dir, atomic_dir(ws.root / "faces") as face_dir:
        for source_id, segments in target_segments(ws).items():
            source = sources[source_id]
            audio, _ = sf.read(ws.root / source["audio"], dtype="float32")
            planned = plan_clips(segments, source_speech_probabilities(ws, source_id))
            for n, seg in enumerate(tqdm(planned, desc=f"cutting clips of source {source_id}", unit="clip")):
                clip_id = f"{source_id}-{n:04d}"
                sf.write(clip_dir / f"{clip_id}.wav", audio[int(seg.start_s * RATE) : int(seg.end_s * RATE)], RATE,
                         subtype="PCM_16")
                face = False
                if source["video"]:
                    size = (source["video"]["width"], source["video"]["height"])
                    track = track_face(ws.root / source["media"], seg.start_s, seg.duration_s, size, cfg.fps,
                                       cfg.height, cfg.width)
                    face = track.has_face
                    if face:
                        np.savez_compressed(face_dir / f"{clip_id}.npz", frames=track.frames, points=track.points)
                clips.append({
                    "id": clip_id,
                    "source": source_id,
                    "start_s": round(seg.start_s, 3),
                    "end_s": round(seg.end_s, 3),
                    "audio": f"clips/{clip_id}.wav",
                    "face": f"faces/{clip_id}.npz" if face else None,
                })
    if not clips:
        raise PipelineError("the target speaker has no stretch of speech of at least 1 s")
    return {
        "clips": clips,
        "fps": cfg.fps,
        "speech_s": round(sum(c["end_s"] - c["start_s"] for c in clips), 2),
        "with_face": sum(c["face"] is not None for c in clips),
    }
