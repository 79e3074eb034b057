"""ffmpeg/ffprobe for the pipeline: what a file holds, its audio as 16 kHz mono, and its frames as RGB arrays."""

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.atomic import atomic_path
from pipelines.workspace import PipelineError


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PipelineError(f"{name} is not installed (make system-deps installs it)")
    return path


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    has_audio: bool
    width: int  # 0 without a video track
    height: int

    @property
    def has_video(self) -> bool:
        return self.width > 0


def probe(path: Path) -> MediaInfo:
    result = subprocess.run(
        [_tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise PipelineError(f"{path.name} is not a media file ffmpeg can read: {result.stderr.strip()[:200]}")
    info = json.loads(result.stdout)
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video" and s.get("disposition", {}).get("attached_pic") != 1), None)
    return MediaInfo(
        duration_s=float(info.get("format", {}).get("duration") or 0.0),
        has_audio=any(s.get("codec_type") == "audio" for s in streams),
        width=int(video["width"]) if video else 0,
        height=int(video["height"]) if video else 0,
    )


def extract_audio(source: Path, target: Path, rate: int = 16000) -> None:
    """The first audio track as mono 16-bit WAV at `rate` (written next to `target`, then moved in)."""
    with atomic_path(target) as partial:
        result = subprocess.run(
            [_tool("ffmpeg"), "-nostdin", "-v", "error", "-y", "-i", str(source), "-vn", "-ac", "1", "-ar",
             str(rate), "-c:a", "pcm_s16le", str(partial)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise PipelineError(f"could not extract audio from {source.name}: {result.stderr.strip()[:200]}")


def read_frames(source: Path, start_s: float, duration_s: float, fps: int, width: int, height: int) -> Iterator[np.ndarray]:
    """RGB frames (height, width, 3) of [start_s, start_s + duration_s) at `fps`."""
    process = subprocess.Popen(
        [_tool("ffmpeg"), "-nostdin", "-v", "error", "-ss", f"{start_s:.3f}", "-t", f"{duration_s:.3f}",
         "-i", str(source), "-an", "-vf", f"fps={fps},scale={width}:{height}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    size = width * height * 3
    try:
        while len(data := process.stdout.read(size)) == size:
            yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
    finally:
        process.stdout.close()
        process.kill()
        process.wait()
