"""Media files as a client sends and receives them: WAV bytes in, MP4 streams read back with ffprobe, audio as a
browser decodes it from the gateway's Opus."""

import io
import json
import subprocess
from pathlib import Path

import av
import numpy as np
import soundfile

from core.audio import encode_linear16, resample
from services.gateway.audio_encoder import OpusEncoder


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


def through_opus(audio: np.ndarray, rate: int, kbps: int) -> np.ndarray:
    """What a browser decodes from the gateway's Opus packets of `audio`."""
    encoder = OpusEncoder(rate, kbps)
    packets = encoder.encode(encode_linear16(audio)) + encoder.flush()
    decoder = av.CodecContext.create("libopus", "r")
    decoder.layout = "mono"
    frames = [frame for data in packets for frame in decoder.decode(av.Packet(data))]
    samples = np.concatenate([frame.to_ndarray().ravel() for frame in frames]).astype(np.float32)
    return resample(samples, frames[0].sample_rate, rate)
