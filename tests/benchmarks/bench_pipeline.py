"""The avatar pipeline's preparation steps on long videos: minutes of video per minute of processing, and the
peak memory of each step's process, for a short and a long recording (memory that does not grow with the
length is what lets an hour of video through).

The videos are two people talking (tests/synthetic_video.py: short phrases with pauses, voices the models were
not built around) in front of the default face, downloaded over HTTP by yt-dlp as a user's video would be.
"""

import functools
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import soundfile as sf

from pipelines.sda.synthetic import default_photo
from tests.benchmarks.report import Section
from tests.stack import ROOT
from tests.synthetic_video import pausy_conversation
from tests.voices import UNFAMILIAR, say

STEPS = ("create_dataset", "diarize", "clip", "transcribe")
LENGTHS = {"2-minute": 18, "10-minute": 90}  # turns of conversation (about 6.7 s each)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the bench's output is its table, not a line per request
        pass


def _video(folder: Path, name: str, turns: int) -> float:
    """A conversation in front of a still face as an MP4 in `folder`; its length in seconds."""
    wav, face = folder / f"{name}.wav", folder / "face.png"
    pausy_conversation(wav, turns)
    cv2.imwrite(str(face), cv2.cvtColor(cv2.resize(default_photo(), (448, 448)), cv2.COLOR_RGB2BGR))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-framerate", "25", "-i", str(face), "-i", str(wav),
                    "-c:v", "libx264", "-preset", "ultrafast", "-tune", "stillimage", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-shortest", str(folder / f"{name}.mp4")], check=True)
    return sf.info(wav).duration


def _peak_mb(pid: int) -> float | None:
    """The process's resident high-water mark so far (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return None


def _step(step: str, args: list[str], log: Path) -> tuple[float, float]:
    """Seconds and peak resident memory (MB) of one step's process."""
    started = time.perf_counter()
    with open(log, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "pipelines", step, *args], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=err)
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, _peak_mb(process.pid) or 0.0)
            time.sleep(0.2)
    seconds = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"pipeline step {step} failed: {log.read_text()[-2000:]}")
    return seconds, peak


def run(stack) -> Section:
    section = Section("Pipeline: preparing a long video (download, diarize, clip with face tracks, transcribe)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sf.write(folder / "reference.wav", say("This is how I sound when I talk for a while.", UNFAMILIAR[1]).samples,
                 16000)
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=tmp))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            for label, turns in LENGTHS.items():
                seconds = _video(folder, label, turns)
                args = ["--dataset", label, "--url", f"http://127.0.0.1:{server.server_address[1]}/{label}.mp4",
                        "--reference", str(folder / "reference.wav"), "--data-dir", str(folder / "data")]
                for step in STEPS:
                    spent, peak = _step(step, args, folder / f"{label}-{step}.log")
                    section.add(f"{label} video ({seconds / 60:.1f} min), {step}",
                                f"{seconds / spent:.1f} min of video per min; peak {peak:.0f} MB")
        finally:
            server.shutdown()
    section.notes.append("Each step is its own process (`python -m pipelines <step>`), as a user runs them; "
                         "peak memory is that process's maximum resident set. Two people talk in short phrases "
                         "with pauses; the face is still, so the clip step's face tracking does its full work "
                         "on every clip.")
    return section
