"""SDA training runs for real on a tiny synthetic set it makes itself."""

import math

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core import audio as pcm
from core.sda.checkpoint import load_generator
from pipelines.sda.synthetic import default_photo, write_dataset
from pipelines.sda.train import train
from services.sda.avatars import Avatar
from services.sda.engine import Animator
from tests.speech import speak

pytestmark = pytest.mark.unit


def test_a_few_steps_train_all_four_networks_and_log_them(tmp_path):
    data = write_dataset(tmp_path / "data", default_photo(), sentences=3, seed=5)
    generator_file = train(data, tmp_path / "run", steps=3, batch_size=2, window=8, resume=False)
    events = EventAccumulator(str(next((tmp_path / "run" / "tb").glob("version_*"))))
    events.Reload()
    for tag in ("loss/generator", "loss/frame_d", "loss/sequence_d", "loss/sync_d", "loss/l1_lower"):
        values = [e.value for e in events.Scalars(tag)]
        assert values and all(math.isfinite(v) for v in values), tag
    generator, photo = load_generator(generator_file)
    assert photo.shape == (512, 512, 3) and generator.cfg.height == 128
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_the_gpu_size_trains_and_its_file_animates_a_face_at_its_size(tmp_path):
    """The larger rung of the ladder (a GPU's; one step here, on the CPU): its file carries its size, and the
    service's animator renders speech with it without being told."""
    data = write_dataset(tmp_path / "data", default_photo(), sentences=2, seed=6)
    generator_file = train(data, tmp_path / "run", steps=1, batch_size=1, window=6, size="gpu", resume=False)
    generator, photo = load_generator(generator_file)
    assert (generator.cfg.height, generator.cfg.width, generator.cfg.channels) == (256, 192, 48)
    animator = Animator(Avatar.build("large", generator, photo), 16000, pcm.FLOAT32, 25)
    frames = animator.push(speak("Larger faces need a larger model.", 16000).tobytes())
    assert frames and all(f.crop.shape == (256, 192, 3) for f in frames)
