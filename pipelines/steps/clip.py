"""Step 3, clip: cut the target's speech into 1-8 s clips at pauses, with the face track of each clip's video.

Clips follow the target's phrases across the pauses people make inside sentences (unless someone else speaks in
the pause) and are cut at pauses; the manifest's `yield` is the share of the target's diarized speech the clips
hold. Outputs: `clips/<id>.wav` (16 kHz mono) and, for clips that show the target's face throughout,
`faces/<id>.npz` (aligned crops for the SDA model and their landmarks). Other clips are kept for the audio-only
steps with `"face": null` and the reason in `face_problem` (no face, a scene cut, two faces, the face lost,
another person's face).
"""

import bisect

import numpy as np
import soundfile as sf
from tqdm import tqdm

from core.atomic import atomic_dir
from core.sda.model import SIZES
from pipelines.steps.diarize import source_speech_probabilities, speaker_segments
from pipelines.face_track import track_face
from pipelines.options import Options
from pipelines.speech_regions import RATE, STEP_S, Segment
from pipelines.workspace import PipelineError, Workspace

NEEDS = ["create_dataset", "diarize"]
MIN_S, MAX_S = 1.0, 8.0
# A speaker's phrases are one clip across pauses up to this long (people pause inside sentences), unless someone
# else speaks in the pause.
JOIN_GAP_S = 1.2
SAME_PERSON = 0.6  # dlib face descriptors of one person are closer than this


def key(ws: Workspace, opts: Options) -> dict:
    return {"min_s": MIN_S, "max_s": MAX_S, "join_gap_s": JOIN_GAP_S, "sda_size": opts.sda_size}


def _split_long(segment: Segment, probs: np.ndarray) -> list[Segment]:
    """A segment longer than MAX_S, cut at its quietest 32 ms window at least MIN_S from either end, again
    until every piece fits."""
    pending, out = [segment], []
    while pending:
        seg = pending.pop()
        if seg.duration_s <= MAX_S:
            out.append(seg)
            continue
        a, b = int((seg.start_s + MIN_S) / STEP_S), int((seg.end_s - MIN_S) / STEP_S)
        cut = (a + int(np.argmin(probs[a:b]))) * STEP_S if b > a else (seg.start_s + seg.end_s) / 2
        pending += [Segment(cut, seg.end_s), Segment(seg.start_s, cut)]
    return sorted(out, key=lambda s: s.start_s)


def _runs(segments: list[Segment], others: list[Segment]) -> list[list[Segment]]:
    """The target's segments in runs: a pause up to JOIN_GAP_S in which nobody else speaks keeps a run going."""
    runs: list[list[Segment]] = []
    for seg in segments:
        last = runs[-1][-1] if runs else None
        if last is not None and seg.start_s - last.end_s <= JOIN_GAP_S and not any(
                o.start_s < seg.start_s and o.end_s > last.end_s for o in others):
            runs[-1].append(seg)
        else:
            runs.append([seg])
    return runs


def _pack(run: list[Segment], before_s: float, after_s: float) -> list[Segment]:
    """Clips of 1-8 s cut at a run's pauses, keeping the most speech in the fewest clips (a dynamic programme over
    where to cut).
    A clip too short on its own may take in silence around it, up to half of each pause next to it (the room
    `before_s` and `after_s` gives at the run's ends), to reach MIN_S."""
    n = len(run)
    room_left = [before_s] + [(run[i].start_s - run[i - 1].end_s) / 2 for i in range(1, n)]
    room_right = [(run[i + 1].start_s - run[i].end_s) / 2 for i in range(n - 1)] + [after_s]

    def clip(i: int, j: int) -> Segment | None:
        start, end = run[i].start_s, run[j].end_s
        short = MIN_S - (end - start)
        if short > 0:
            left, right = room_left[i], room_right[j]
            if left + right < short:
                return None
            take_left = min(left, max(short / 2, short - right))
            start, end = start - take_left, end + (short - take_left)
        return Segment(start, end)

    def better(kept: float, clips: list, than: tuple[float, list]) -> bool:
        """More speech kept (to the millisecond) or, as much, in fewer clips: a sentence is not cut at a pause
        it has room for."""
        return (round(kept, 3), -len(clips)) > (round(than[0], 3), -len(than[1]))

    speech = np.concatenate([[0.0], np.cumsum([seg.duration_s for seg in run])])  # speech[k]: in run[:k]
    best: list[tuple[float, list[Segment]]] = [(0.0, [])]  # best[k]: the most speech clips of run[:k] hold
    for j in range(n):
        chosen = best[j]  # segment j left out
        for i in range(j, -1, -1):
            if run[j].end_s - run[i].start_s > MAX_S:
                break
            made = clip(i, j)
            if made is None:
                continue
            option = (best[i][0] + speech[j + 1] - speech[i], best[i][1] + [made])
            if better(*option, chosen):
                chosen = option
        best.append(chosen)
    return best[n][1]


def plan_clips(segments: list[Segment], probs: np.ndarray, others: list[Segment] = (),
               total_s: float | None = None) -> list[Segment]:
    """1-8 s clips of the target's `segments`, one speaker each: phrases joined across pauses, cut at pauses
    (or, inside one long stretch of speech, at its quietest point), short ones padded with the silence around
    them. `others`: every other speaker's segments; `total_s`: the recording's length."""
    total_s = total_s if total_s is not None else len(probs) * STEP_S
    pieces = [piece for seg in segments for piece in _split_long(seg, probs)]
    ends = sorted(s.end_s for s in [*pieces, *others])
    starts = sorted(s.start_s for s in [*pieces, *others])
    clips = []
    for run in _runs(pieces, list(others)):
        k = bisect.bisect_right(ends, run[0].start_s)  # the speech that ends before the run starts
        before = ends[k - 1] if k else 0.0
        k = bisect.bisect_left(starts, run[-1].end_s)  # and what starts after it ends
        after = starts[k] if k < len(starts) else total_s
        clips += _pack(run, max(0.0, run[0].start_s - before) / 2, max(0.0, after - run[-1].end_s) / 2)
    return clips


def speech_in(clips: list[Segment], segments: list[Segment]) -> float:
    """Seconds of `segments` inside `clips`."""
    return sum(max(0.0, min(c.end_s, s.end_s) - max(c.start_s, s.start_s)) for c in clips for s in segments)


def other_people(identities: dict[str, np.ndarray]) -> dict[str, str]:
    """Clips whose face is not the target's, with the reason. The target is the person most clips show: the
    face closest to the most others (within SAME_PERSON), and the mean of those."""
    if len(identities) < 2:
        return {}
    ids = list(identities)
    faces = np.stack([identities[i] for i in ids])
    distances = np.linalg.norm(faces[:, None] - faces[None], axis=2)
    anchor = int(np.argmax((distances < SAME_PERSON).sum(axis=1)))
    target = faces[distances[anchor] < SAME_PERSON].mean(axis=0)
    away = np.linalg.norm(faces - target, axis=1)
    return {i: f"another person's face (identity distance {d:.2f} from the target's; same person under "
               f"{SAME_PERSON})" for i, d in zip(ids, away) if d >= SAME_PERSON}


def run(ws: Workspace, opts: Options) -> dict:
    sources = {s["id"]: s for s in ws.require("create_dataset")["sources"]}
    cfg = SIZES[opts.sda_size]  # the face crops are cut at the size the generator will be trained at
    clips = []
    target_s = kept_s = 0.0  # the target's diarized speech, and how much of it the clips hold
    identities: dict[str, np.ndarray] = {}  # clip id → the identity of the face it shows
    with atomic_dir(ws.root / "clips") as clip_dir, atomic_dir(ws.root / "faces") as face_dir:
        for source_id, (segments, others) in speaker_segments(ws).items():
            source = sources[source_id]
            wav = ws.root / source["audio"]
            planned = plan_clips(segments, source_speech_probabilities(ws, source_id), others, sf.info(wav).duration)
            target_s += sum(seg.duration_s for seg in segments)
            kept_s += speech_in(planned, segments)
            for n, seg in enumerate(tqdm(planned, desc=f"cutting clips of source {source_id}", unit="clip")):
                clip_id = f"{source_id}-{n:04d}"
                audio, _ = sf.read(wav, start=int(seg.start_s * RATE), stop=int(seg.end_s * RATE), dtype="float32")
                sf.write(clip_dir / f"{clip_id}.wav", audio, RATE, subtype="PCM_16")
                problem = "no video"
                if source["video"]:
                    size = (source["video"]["width"], source["video"]["height"])
                    track = track_face(ws.root / source["media"], seg.start_s, seg.duration_s, size, cfg.fps,
                                       cfg.height, cfg.width)
                    problem = track.problem
                    if track.has_face:
                        np.savez_compressed(face_dir / f"{clip_id}.npz", frames=track.frames, points=track.points)
                        identities[clip_id] = track.identity
                clips.append({
                    "id": clip_id,
                    "source": source_id,
                    "start_s": round(seg.start_s, 3),
                    "end_s": round(seg.end_s, 3),
                    "audio": f"clips/{clip_id}.wav",
                    "face": f"faces/{clip_id}.npz" if not problem else None,
                    "face_problem": problem,
                })
        strangers = other_people(identities)  # faces of someone other than the person most clips show
        for clip in clips:
            if clip["id"] in strangers:
                (face_dir / f"{clip['id']}.npz").unlink()
                clip["face"], clip["face_problem"] = None, strangers[clip["id"]]
    if not clips:
        raise PipelineError("the target speaker has no stretch of speech of at least 1 s")
    return {
        "clips": clips,
        "fps": cfg.fps,
        "speech_s": round(sum(c["end_s"] - c["start_s"] for c in clips), 2),
        "with_face": sum(c["face"] is not None for c in clips),
        # the share of the target's diarized speech that is in a clip (the rest was too short or overlapped)
        "yield": round(kept_s / target_s, 3) if target_s else 0.0,
    }
