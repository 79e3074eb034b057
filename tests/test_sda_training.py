"""SDA training runs for real on a tiny synthetic set it makes itself."""

import math
import tracemalloc

import numpy as np
import pytest
from avatar.sda.v1 import sda_pb2
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core import audio as pcm
from core.sda.checkpoint import load_generator
from core.sda.model import SdaConfig
from pipelines.sda.synthetic import default_photo, write_dataset
from pipelines.sda.train import train
from pipelines.sda.video_dataset import VideoClips, write_video_dataset
from services.sda.avatars import Avatar
from services.sda.config import SdaSettings
from services.sda.engine import Animator
from services.sda.frame_codec import FrameCodec
from tests.speech import speak

pytestmark = pytest.mark.unit


def test_a_few_steps_train_all_four_networks_and_log_them(tmp_path):
    data = write_dataset(tmp_path / "data", default_photo(), sentences=3, seed=5)
    generator_file = train(data, tmp_path / "run", steps=3, batch_size=2, window=8, resume=False)
    events = EventAccumulator(str(next((tmp_path / "run" / "tb").glob("version_*"))))
    events.Reload()
    for tag in ("loss/generator", "loss/frame_d", "loss/sequence_d", "loss/sync_d", "loss/l1_lower",
                "loss/pose"):
        values = [e.value for e in events.Scalars(tag)]
        assert values and all(math.isfinite(v) for v in values), tag
    generator, photo = load_generator(generator_file)
    assert photo.shape == (512, 512, 3) and generator.cfg.height == 128
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_the_gpu_size_trains_and_its_file_animates_a_face_at_its_size(tmp_path):
    """The larger rung of the ladder (a GPU's; one step here, on the CPU): its file carries its size, and the
    service animates speech with it without being told."""
    data = write_dataset(tmp_path / "data", default_photo(), sentences=2, seed=6)
    generator_file = train(data, tmp_path / "run", steps=1, batch_size=1, window=6, size="gpu", resume=False)
    generator, photo = load_generator(generator_file)
    assert (generator.cfg.height, generator.cfg.width, generator.cfg.channels) == (256, 192, 48)
    avatar = Avatar.build("large", generator, photo)
    animator = Animator(avatar, 16000, pcm.FLOAT32, 25)
    frames = animator.push(speak("Larger faces need a larger model.", 16000).tobytes())
    cfg = generator.cfg
    assert frames and all(f.cavity.shape == (3, cfg.cavity_height, cfg.cavity_width) for f in frames)
    codec = FrameCodec(avatar.rig, sda_pb2.AnimateConfig(framing=sda_pb2.PHOTO), SdaSettings(), 25)
    assert codec.picture(frames[-1]).shape == photo.shape


def test_a_video_training_set_is_held_in_memory_once(tmp_path):
    """Forty clips of face video: opening the set for training costs about the set's own size, not a copy of it
    per clip (a long video's set is gigabytes)."""
    cfg = SdaConfig()
    rng = np.random.default_rng(3)
    clips = [(rng.integers(0, 255, (30, cfg.height, cfg.width, 3), dtype=np.uint8),
              rng.standard_normal(30 * cfg.samples_per_frame).astype(np.float32), f"clip {i}") for i in range(40)]
    write_video_dataset(tmp_path / "video", default_photo(), clips, cfg)
    size = sum(frames.nbytes + audio.nbytes for frames, audio, _ in clips)
    tracemalloc.start()
    dataset = VideoClips(tmp_path / "video", cfg, window=8)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(dataset.clips) == 40 and peak < 3 * size, f"{peak / 1e6:.0f} MB to hold {size / 1e6:.0f} MB"
