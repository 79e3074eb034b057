"""Step 2, diarize: find the target speaker's speech.

Speech regions (Silero VAD) are embedded in 1.2 s windows every 0.3 s with resemblyzer's GE2E speaker encoder,
the windows clustered (agglomerative, cosine), and the target is the cluster closest to a reference clip of the
person (`--reference`), or else the speaker with the most speech. A region whose windows all agree keeps its
exact VAD bounds; where the speaker changes inside a region, each 0.3 s slot takes the label of the windows
covering it. Windows close to no speaker, or about as close to the target as to another one (overlapped speech,
music), are dropped. Output: `diarization.json` with every source's labelled segments, and `vad/<source>.npy`
(the speech probability of every 32 ms window, which `clip` cuts at).

Long recordings: the audio is read a minute (VAD) or a chunk of windows (embeddings) at a time, and clustering
works on a sample of the windows, so memory stays bounded for an hour of video. The VAD of each source and every
chunk of embeddings are saved under runs/diarize as they are made: a killed run picks up where it stopped.
"""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from core.atomic import atomic_dir, write_json
from pipelines.options import Options
from pipelines.speech_regions import (
    RATE,
    Segment,
    speech_probabilities,
    speech_segments,
)
from pipelines.workspace import PipelineError, Workspace

log = logging.getLogger(__name__)

NEEDS = ["create_dataset"]
VAD_DIR = "vad"
WINDOW_S = 1.2
HOP_S = 0.3
SAME_SPEAKER = 0.72  # cosine similarity above which two windows are one speaker (GE2E)
OVERLAP_MARGIN = 0.05  # target windows at most this much closer to the target than to another speaker are dropped


def key(ws: Workspace, opts: Options) -> dict:
    return {"reference": _file_key(opts.reference)}


def _file_key(path) -> str | None:
    if path is None:
        return None
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"


class SpeakerEncoder:
    def __init__(self):
        import torch
        from resemblyzer import VoiceEncoder

        torch.set_num_threads(2)
        self._encoder = VoiceEncoder("cpu", verbose=False)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        from resemblyzer.audio import normalize_volume

        return self._encoder.embed_utterance(normalize_volume(audio.astype(np.float32), -30, increase_only=True))


def _windows(segment: Segment) -> list[tuple[float, float]]:
    if segment.duration_s <= WINDOW_S:
        return [(segment.start_s, segment.end_s)]
    starts = np.arange(segment.start_s, segment.end_s - WINDOW_S + 1e-6, HOP_S)
    if segment.end_s - (starts[-1] + WINDOW_S) > 0.05:
        starts = np.append(starts, segment.end_s - WINDOW_S)
    return [(float(s), float(s) + WINDOW_S) for s in starts]


def _cluster(embeddings: np.ndarray) -> np.ndarray:
    """Speaker labels: agglomerative clustering of up to MAX_CLUSTERED windows spread over the recording; with
    more, every window then takes the label of the nearest cluster's centre."""
    from sklearn.cluster import AgglomerativeClustering

    if len(embeddings) < 2:
        return np.zeros(len(embeddings), dtype=int)
    step = -(-len(embeddings) // MAX_CLUSTERED)
    model = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=1 - SAME_SPEAKER
    )
    sampled = model.fit_predict(embeddings[::step])
    if step == 1:
        return sampled
    centres = np.stack([embeddings[::step][sampled == label].mean(axis=0) for label in range(sampled.max() + 1)])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return np.argmax(embeddings @ centres.T, axis=1)


EMBED_CHUNK = 500  # windows embedded between two saves of the work done (a killed run resumes from there)
MAX_CLUSTERED = 2000  # windows clustered; the others join the nearest cluster (memory grows with the square)


def _embed_source(encoder: "SpeakerEncoder", wav: Path, windows: list[tuple[float, float]], run_dir: Path,
                  source_id: str) -> np.ndarray:
    """Speaker embeddings of one source's windows, reading only the audio of the chunk at hand; chunks a killed
    run finished are loaded, not embedded again."""
    out = []
    chunks = range(0, len(windows), EMBED_CHUNK)
    for k in tqdm(chunks, desc=f"embedding speakers of source {source_id}", unit="chunk"):
        saved = run_dir / f"embeddings-{source_id}-{k // EMBED_CHUNK:05d}.npy"
        if not saved.is_file():
            part = windows[k : k + EMBED_CHUNK]
            start, stop = int(part[0][0] * RATE), int(part[-1][1] * RATE)
            audio, _ = sf.read(wav, start=start, stop=stop, dtype="float32")
            embedded = np.stack([encoder.embed(audio[int(a * RATE) - start : int(b * RATE) - start]) for a, b in part])
            np.save(saved.with_suffix(".tmp.npy"), embedded)
            saved.with_suffix(".tmp.npy").replace(saved)
        out.append(np.load(saved))
    return np.concatenate(out) if out else np.zeros((0, 256), np.float32)


def _probabilities(wav: Path, run_dir: Path, source_id: str) -> np.ndarray:
    """A source's VAD probabilities, measured once (a killed run reuses them)."""
    saved = run_dir / f"vad-{source_id}.npy"
    if not saved.is_file():
        np.save(saved.with_suffix(".tmp.npy"), speech_probabilities(wav))
        saved.with_suffix(".tmp.npy").replace(saved)
    return np.load(saved)


def run(ws: Workspace, opts: Options) -> dict:
    sources = ws.require("create_dataset")["sources"]
    run_dir, resumed = ws.run_dir("diarize", ws.inputs(NEEDS, key(ws, opts)), opts.force)
    if resumed:
        log.info("diarize: resuming an interrupted run (%d saved pieces)", len(list(run_dir.glob("*.npy"))))
    encoder = SpeakerEncoder()
    windows = []  # (source index, segment index, start, end)
    regions: list[list[Segment]] = []
    per_source = []
    with atomic_dir(ws.root / VAD_DIR) as vad_dir:
        for s, source in enumerate(sources):
            wav = ws.root / source["audio"]
            probs = _probabilities(wav, run_dir, source["id"])
            np.save(vad_dir / f"{source['id']}.npy", probs)
            segments = speech_segments(wav)
            regions.append(segments)
            mine = [(s, g, a, b) for g, segment in enumerate(segments) for a, b in _windows(segment)]
            per_source.append(_embed_source(encoder, wav, [(a, b) for *_, a, b in mine], run_dir, source["id"]))
            windows += mine
    if not windows:
        raise PipelineError("no speech found in the dataset's audio")
    embeddings = np.concatenate(per_source)
    labels = _cluster(embeddings)
    centroids = {}
    for label in np.unique(labels):
        c = embeddings[labels == label].mean(axis=0)
        centroids[int(label)] = c / np.linalg.norm(c)
    durations = {label: float(sum(w[3] - w[2] for w, l in zip(windows, labels) if l == label)) for label in centroids}
    if opts.reference is not None:
        if not opts.reference.is_file():
            raise PipelineError(f"reference clip {opts.reference} does not exist")
        from pipelines.ffmpeg import extract_audio

        ref_wav = ws.root / "reference.wav"
        extract_audio(opts.reference, ref_wav)
        reference, _ = sf.read(ref_wav, dtype="float32")
        ref = encoder.embed(reference)
        target = max(centroids, key=lambda label: float(ref @ centroids[label]))
    else:
        target = max(durations, key=durations.get)
    others = [c for label, c in centroids.items() if label != target]
    keep = []
    for embedding, label in zip(embeddings, labels):
        to_target = float(embedding @ centroids[target])
        to_other = max((float(embedding @ c) for c in others), default=-1.0)
        keep.append(label == target and to_target >= SAME_SPEAKER - 0.1 and to_target - to_other > OVERLAP_MARGIN)

    result, target_s, other_s = [], 0.0, 0.0
    for s, source in enumerate(sources):
        labelled = []
        for g, segment in enumerate(regions[s]):
            mine = [(w[2], w[3], k) for w, k in zip(windows, keep) if w[0] == s and w[1] == g]
            if all(k for *_, k in mine):
                labelled.append({"start_s": segment.start_s, "end_s": segment.end_s, "target": True})
            elif not any(k for *_, k in mine):
                labelled.append({"start_s": segment.start_s, "end_s": segment.end_s, "target": False})
            else:
                labelled += _split(segment, mine)
        for item in labelled:
            item["start_s"], item["end_s"] = round(item["start_s"], 3), round(item["end_s"], 3)
            if item["target"]:
                target_s += item["end_s"] - item["start_s"]
            else:
                other_s += item["end_s"] - item["start_s"]
        result.append({"source": source["id"], "segments": labelled})
    write_json(ws.root / "diarization.json", result)
    shutil.rmtree(run_dir)  # the saved pieces were for resuming this run
    return {
        "speakers": len(centroids),
        "target_speech_s": round(target_s, 2),
        "other_speech_s": round(other_s, 2),
        "chose_target_by": "reference" if opts.reference is not None else "most speech",
    }


def _split(segment: Segment, windows: list[tuple[float, float, bool]]) -> list[dict]:
    """Labels each HOP_S slot of a segment: target only where every window covering it is."""
    slots = np.arange(segment.start_s, segment.end_s, HOP_S)
    labels = []
    for a in slots:
        b = min(a + HOP_S, segment.end_s)
        covering = [k for s, e, k in windows if s < b and e > a]
        labels.append(bool(covering) and all(covering))
    out: list[dict] = []
    for a, label in zip(slots, labels):
        b = min(a + HOP_S, segment.end_s)
        if out and out[-1]["target"] == label:
            out[-1]["end_s"] = float(b)
        else:
            out.append({"start_s": float(a), "end_s": float(b), "target": label})
    return out


def source_speech_probabilities(ws: Workspace, source_id: str) -> np.ndarray:
    """The VAD probabilities of a source, as a finished diarization measured them."""
    return np.load(ws.root / VAD_DIR / f"{source_id}.npy")


def speaker_segments(ws: Workspace) -> dict[str, tuple[list[Segment], list[Segment]]]:
    """Per source id, the target's speech and everyone else's, from a finished diarization."""
    data = json.loads((ws.root / "diarization.json").read_text())
    return {
        entry["source"]: tuple([Segment(s["start_s"], s["end_s"]) for s in entry["segments"] if s["target"] == target]
                               for target in (True, False))
        for entry in data
    }
