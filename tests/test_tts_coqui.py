"""The Coqui VITS backend: a tiny voice trained here for a few steps, served by the TTS service beside Piper."""

import numpy as np
import pytest
from avatar.tts.v1 import tts_pb2, tts_pb2_grpc

from core.tts.backends.piper_voice import packaged_voice
from core.tts.text_normalizer import normalize
from pipelines.tts.ljspeech import Utterance, write_ljspeech
from pipelines.tts.train import train
from tests.speech import SENTENCES, voice
from tests.stack import Stack
from tests.test_tts import pcm, synthesize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("coqui")
    piper = voice()
    utterances = [
        Utterance(f"s{i:02d}", text, piper.synthesize(normalize(text), 1.0).audio, piper.voice.sample_rate)
        for i, text in enumerate(SENTENCES[:8])
    ]
    write_ljspeech(root / "data", utterances)
    trained_voice = train(root / "data", root / "run", size="tiny", epochs=2, batch_size=4)
    # The service sees it as a voice folder named after the speaker, next to a Piper voice.
    voices = root / "voices"
    voices.mkdir()
    (trained_voice).rename(voices / "ada")
    model, config = packaged_voice()
    (voices / model.name).symlink_to(model)
    (voices / config.name).symlink_to(config)
    return root


@pytest.fixture(scope="module")
def coqui_tts(trained, redis_url):
    env = {"TTS_BACKEND": "coqui", "TTS_VOICE_PATH": str(trained / "voices" / "ada"),
           "TTS_VOICES_DIR": str(trained / "voices")}
    stack = Stack(redis_url, extra_env=env).start(["tts"])
    assert stack.wait("tts") == "SERVING"
    yield stack
    stack.stop()


def test_training_logs_checkpoints_and_exports(trained):
    run = next((trained / "run").glob("vits-*"))
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard log"
    assert list(run.glob("*.pth")), "no resumable checkpoint"
    assert {p.name for p in (trained / "voices" / "ada").iterdir()} == {"config.json", "model.pth"}


def test_the_trained_voice_is_the_default_and_piper_stays_selectable(coqui_tts):
    import grpc

    with grpc.insecure_channel(coqui_tts.address("tts")) as channel:
        listed = tts_pb2_grpc.TtsServiceStub(channel).ListVoices(tts_pb2.ListVoicesRequest(), timeout=10)
    backends = {v.name: v.backend for v in listed.voices}
    assert listed.default_voice == "ada"
    assert backends["ada"] == "coqui" and backends["en_US-joe-medium"] == "piper"


def test_coqui_voice_streams_audio_with_phoneme_timings(coqui_tts):
    text = ["The library closes at 6 o'clock, ", "so please hurry. ", "We will wait outside."]
    responses = synthesize(coqui_tts, text, rate=16000)
    audio, rate = pcm(responses)
    chunks = [r.audio for _, r in responses if r.WhichOneof("result") == "audio"]
    assert rate == 16000 and np.isfinite(audio).all()
    assert float(np.sqrt(np.mean(audio**2))) > 1e-4, "the voice gave silence"
    spoken = [c.text for c in chunks if c.text]
    assert len(spoken) >= 2, f"expected clause-by-clause chunks, got {spoken}"
    phonemes = [p for c in chunks for p in c.phonemes]
    assert len(phonemes) > 20
    starts = [p.start_s for p in phonemes]
    assert starts == sorted(starts)
    total = [r.end for _, r in responses if r.WhichOneof("result") == "end"][0].total_duration_s
    assert phonemes[-1].end_s <= total + 0.05 and abs(total - audio.size / rate) < 0.01


def test_piper_voice_beside_it_still_speaks(coqui_tts):
    audio, rate = pcm(synthesize(coqui_tts, ["Good morning, everyone."], voice="en_US-joe-medium"))
    assert rate and 0.5 < audio.size / rate < 4.0
