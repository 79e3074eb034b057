"""Step 9a, sda_dataset: the SDA training set — each clip's face video, re-voiced by the fine-tuned voice.

The generator is driven by synthesized speech at run time, so it is trained on synthesized speech ("synthetic
wave forms"): every clip with a face and a transcript is spoken again by `models/voice`, and its frames are
stretched in time onto the new audio (a linear warp between speech start and end). A clip whose re-voiced
audio is implausible (under 0.3 s, or over 3× the original) keeps its original audio. The avatar's photo is the
full video frame where the mouth is most closed. Output: `sda_data/` (pipelines.sda.video_dataset format).
"""

import json

import numpy as np
import soundfile as sf
from tqdm import tqdm

from core.atomic import atomic_dir
from core.audio import resample
from core.sda.face_rig import FaceError, FaceRig
from core.sda.model import SIZES, SdaConfig
from core.tts.text_normalizer import normalize
from pipelines.face_track import MAX_WIDTH
from pipelines.ffmpeg import read_frames
from pipelines.options import Options
from pipelines.sda.video_dataset import write_video_dataset
from pipelines.workspace import PipelineError, Workspace

NEEDS = ["create_dataset", "clip", "review", "finetune_tts"]


def key(ws: Workspace, opts: Options) -> dict:
    return {"sda_size": opts.sda_size}


def lip_gap(points: np.ndarray) -> np.ndarray:
    """Inner-lip opening per frame (T,) from 68-point landmarks (T, 68, 2)."""
    return np.abs(points[:, 65:68, 1] - points[:, 61:64, 1][:, ::-1]).mean(axis=1)


def _trim(audio: np.ndarray, level: float = 0.02) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(audio) > level * max(float(np.abs(audio).max(initial=0)), 1e-6))
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, audio.size)


def warp(frames: np.ndarray, original: np.ndarray, revoiced: np.ndarray, cfg: SdaConfig) -> np.ndarray:
    """Frames re-timed onto `revoiced`: its speech span maps linearly onto the original's speech span."""
    spf = cfg.samples_per_frame
    count = max(1, revoiced.size // spf)
    a0, a1 = (x / cfg.sample_rate * cfg.fps for x in _trim(original))
    b0, b1 = (x / cfg.sample_rate * cfg.fps for x in _trim(revoiced))
    t = np.arange(count, dtype=np.float64)
    source = a0 + (t - b0) * (a1 - a0) / max(b1 - b0, 1e-6)
    return frames[np.clip(np.round(source), 0, len(frames) - 1).astype(int)]


def _photo(ws: Workspace, clip: dict, frame: int, cfg: SdaConfig) -> np.ndarray:
    source = next(s for s in ws.require("create_dataset")["sources"] if s["id"] == clip["source"])
    w, h = source["video"]["width"], source["video"]["height"]
    scale = min(1.0, MAX_WIDTH / w)
    size = int(round(w * scale / 2)) * 2, int(round(h * scale / 2)) * 2
    when = clip["start_s"] + frame / cfg.fps
    image = next(read_frames(ws.root / source["media"], when, 2 / cfg.fps, cfg.fps, *size), None)
    if image is None:
        raise PipelineError(f"could not read the frame at {when:.2f} s of source {clip['source']}")
    try:
        FaceRig.from_photo(image, cfg.height, cfg.width)
    except FaceError as err:
        raise PipelineError(f"the clearest frame of the target cannot be the avatar's photo: {err}") from None
    return image


def run(ws: Workspace, opts: Options) -> dict:
    from core.tts.backends.coqui_vits import CoquiVitsBackend
    from pipelines.steps.finetune_tts import VOICE

    cfg = SIZES[opts.sda_size]  # the crop size, frame rate and sample rate the generator is trained at
    final = json.loads((ws.root / "transcripts_final.json").read_text())
    chosen = [c for c in ws.require("clip")["clips"] if c["face"] and final.get(c["id"])]
    if not chosen:
        raise PipelineError("no clip shows the target's face with a transcript: nothing to train the face on")
    voice = CoquiVitsBackend(str(ws.root / VOICE))
    voice.load()
    clips, kept_original, best = [], 0, (np.inf, None, 0)
    for clip in tqdm(chosen, desc="re-voicing clips", unit="clip"):
        track = np.load(ws.root / clip["face"])
        frames, points = track["frames"], track["points"]
        original, _ = sf.read(ws.root / clip["audio"], dtype="float32")
        spoken = voice.synthesize(normalize(final[clip["id"]]), 1.0).audio
        revoiced = resample(spoken, voice.voice.sample_rate, cfg.sample_rate)
        if not 0.3 * cfg.sample_rate <= revoiced.size <= 3 * original.size:
            revoiced, kept_original = original, kept_original + 1
        warped = warp(frames, original, revoiced, cfg)
        audio = np.zeros(len(warped) * cfg.samples_per_frame, np.float32)
        audio[: min(audio.size, revoiced.size)] = revoiced[: audio.size]
        clips.append((warped, audio, final[clip["id"]]))
        gaps = lip_gap(points)
        if gaps.min() < best[0]:
            best = (float(gaps.min()), clip, int(gaps.argmin()))
    photo = _photo(ws, best[1], best[2], cfg)
    with atomic_dir(ws.root / "sda_data") as folder:
        write_video_dataset(folder, photo, clips, cfg)
    return {"clips": len(clips), "kept_original_audio": kept_original,
            "frames": int(sum(len(c[0]) for c in clips)), "photo_from": best[1]["id"]}
