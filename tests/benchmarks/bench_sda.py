"""SDA: streaming fps of one session, first frame after the first audio chunk, training step time, and the generator
alone at each size of the ladder."""

import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import torch
from avatar.common.v1 import common_pb2
from avatar.sda.v1 import sda_pb2, sda_pb2_grpc

from core import audio as pcm
from core.sda.model import SIZES, Generator
from pipelines.sda.synthetic import default_photo, write_dataset
from pipelines.sda.train import train
from services.sda.avatars import Avatar
from services.sda.engine import Animator
from tests.benchmarks.report import Section, met, met_at_least, ms, p50, p95
from tests.speech import SENTENCES, speak, to_linear16

RATE = 16000
MIN_FPS = 100  # one session on the CPU default
MAX_FIRST_FRAME_S = 0.05


def _config():
    fmt = common_pb2.AudioFormat(sample_rate_hz=RATE, encoding=common_pb2.LINEAR16, channels=1)
    return sda_pb2.AnimateRequest(config=sda_pb2.AnimateConfig(audio_format=fmt))


def _training_step_s() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset(Path(tmp) / "data", default_photo(), sentences=4, seed=9)
        start = time.perf_counter()
        train(data, Path(tmp) / "a", steps=2, batch_size=4, resume=False)
        short = time.perf_counter() - start
        start = time.perf_counter()
        train(data, Path(tmp) / "b", steps=6, batch_size=4, resume=False)
        return (time.perf_counter() - start - short) / 4


def _animator_fps(size: str, audio: np.ndarray) -> float:
    """Frames a second the animator makes in this process at a rung of the size ladder (an untrained generator of
    that size: the speed does not depend on the weights)."""
    torch.manual_seed(0)
    generator = Generator(SIZES[size]).eval()
    animator = Animator(Avatar.build(size, generator, default_photo()), RATE, pcm.FLOAT32, 25)
    start = time.perf_counter()
    frames = animator.push(audio.astype(np.float32).tobytes())
    return len(frames) / (time.perf_counter() - start)


def run(stack) -> Section:
    section = Section("SDA (generator width 16; the 512×512 portrait's own pixels warped to each frame's motion, JPEG)")
    audio = np.concatenate([speak(SENTENCES[0], RATE), speak(SENTENCES[1], RATE)])
    first_frame, fps = [], []
    with grpc.insecure_channel(stack.address("sda")) as channel:
        stub = sda_pb2_grpc.SdaServiceStub(channel)
        for _ in range(5):
            chunk = int(0.2 * RATE)
            requests = [_config()] + [sda_pb2.AnimateRequest(audio=to_linear16(audio[i : i + chunk]))
                                      for i in range(0, audio.size, chunk)]
            requests.append(sda_pb2.AnimateRequest(end_of_segment=sda_pb2.EndOfSegment()))
            start = time.perf_counter()
            frames = 0
            first = None
            for response in stub.StreamingAnimate(iter(requests), timeout=120):
                if response.WhichOneof("result") == "frame":
                    frames += 1
                    first = first or time.perf_counter()
            fps.append(frames / (time.perf_counter() - start))
            first_frame.append(first - start)
    section.add("frames/s, one session (whole reply sent at once)",
                f"{p50(fps):.0f} P50 ({met_at_least(p50(fps), MIN_FPS, lambda v: f'{v:.0f} frames/s')})",
                f"≥ {MIN_FPS}")
    section.add("first frame after the first 200 ms audio chunk",
                f"{ms(p50(first_frame))} P50, {ms(p95(first_frame))} P95 ({met(p50(first_frame), MAX_FIRST_FRAME_S)})",
                f"≤ {ms(MAX_FIRST_FRAME_S)}")
    section.add("training step (batch 4 × 16 frames, G + 3 D)", f"{_training_step_s():.2f} s")
    for size, cfg in SIZES.items():
        section.add(f"motion alone, size {size} (trained on {cfg.height}×{cfg.width} crops, width {cfg.channels}), this CPU",
                    f"{_animator_fps(size, audio):.0f} frames/s")
    section.notes.append("The gpu size is meant for a GPU; no GPU was lent to this run, so only its CPU speed is "
                         "shown.")
    section.notes.append("A frame needs 100 ms of audio past its centre (the model's 0.2 s window), so the first "
                         "frame waits for the first chunk; the time above is compute after that chunk arrives.")
    return section
