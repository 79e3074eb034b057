"""Media files as a client sends and receives them: WAV bytes in, MP4 streams read back with ffprobe."""

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import soundfile


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def probe_mp4(mp4: bytes, folder: Path) -> dict:
    """ffprobe's streams and format of an MP4 answer."""
    path = folder / "out.mp4"
    path.write_bytes(mp4)
    result = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)
