"""Makes coqui-tts's VITS read audio with soundfile.

torchaudio 2.9+ reads files through torchcodec, whose wheels here are CUDA builds that cannot load on a CPU box;
VITS's dataset calls `torchaudio.load`. Reading with soundfile gives the same [-1, 1] float tensor.
"""

import soundfile as sf
import torch


def _load_audio(path):
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(samples.T.copy()), rate


def use_soundfile() -> None:
    from TTS.tts.models import vits

    vits.load_audio = _load_audio
