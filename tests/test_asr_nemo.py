"""The NeMo backend: a small CTC model the test builds and trains itself, saved as .nemo and served through the
same streaming RPC as Whisper."""

import json
import math
import os
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import soundfile
from avatar.asr.v1 import asr_pb2, asr_pb2_grpc

from pipelines.asr.ctc_recipe import ctc_config, ctc_text
from services.runner.health import SERVING, status
from services.runner.redis_server import free_port
from services.runner.topology import ServiceSpec
from tests.grpc_helpers import asr_requests, with_silence
from tests.speech import SENTENCES, speak
from tests.stack import ROOT

pytestmark = pytest.mark.contract

@pytest.fixture(scope="module")
def nemo_model(tmp_path_factory):
    import lightning.pytorch as pl
    from nemo.collections.asr.models import EncDecCTCModel
    from omegaconf import OmegaConf

    pl.seed_everything(0)
    folder = tmp_path_factory.mktemp("nemo")
    lines = []
    for i, sentence in enumerate(SENTENCES[:8]):
        audio = speak(sentence)
        path = folder / f"{i}.wav"
        soundfile.write(path, audio, 16000)
        lines.append(json.dumps({"audio_filepath": str(path), "duration": audio.size / 16000,
                                 "text": ctc_text(sentence)}))
    (folder / "train.json").write_text("\n".join(lines))

    losses = []

    class RecordLoss(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = pl.Trainer(max_steps=20, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, callbacks=[RecordLoss()])
    config = ctc_config(str(folder / "train.json"), size="small", batch_size=4)
    model = EncDecCTCModel(cfg=OmegaConf.create(config), trainer=trainer)
    trainer.fit(model)
    path = folder / "tiny.nemo"
    model.save_to(str(path))
    return path, losses


def test_training_runs_and_lowers_the_loss(nemo_model):
    _, losses = nemo_model
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_the_nemo_checkpoint_is_served_through_the_same_rpc(nemo_model):
    path, _ = nemo_model
    port = free_port()
    env = dict(os.environ, ASR_BACKEND="nemo", ASR_MODEL_PATH=str(path), ASR_PORT=str(port), ASR_METRICS_PORT="0")
    process = subprocess.Popen([sys.executable, "-m", "services.asr"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while status(ServiceSpec("asr", port, 0, True)) != SERVING:
            assert process.poll() is None and time.monotonic() < deadline, "the NeMo-backed ASR did not start"
            time.sleep(0.5)
        audio = with_silence(speak(SENTENCES[0]))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            # the silence rule: one turn for the sentence, whatever words a 20-step model makes of it
            requests = asr_requests(audio, end_of_turn=asr_pb2.RecognitionConfig.END_OF_TURN_SILENCE)
            responses = list(asr_pb2_grpc.AsrServiceStub(channel).StreamingRecognize(requests, timeout=120))
    finally:
        process.terminate()
        process.wait(timeout=15)
    events = [r.event.type for r in responses  # one turn (speech going on after a pause is said within it)
              if r.WhichOneof("result") == "event" and r.event.type != asr_pb2.SpeechEvent.SPEECH_RESUMED]
    assert events == [asr_pb2.SpeechEvent.SPEECH_START, asr_pb2.SpeechEvent.END_OF_TURN]
    finals = [r.hypothesis for r in responses if r.WhichOneof("result") == "hypothesis" and r.hypothesis.is_final]
    assert len(finals) == 1
    assert finals[0].words, "the trained model emitted no words"
    seconds = audio.size / 16000
    for word in finals[0].words:  # a 20-step model spells poorly, but its words are timed and scored
        assert 0 <= word.start_s <= word.end_s <= seconds and 0 <= word.confidence <= 1
    starts = [w.start_s for w in finals[0].words]
    assert starts == sorted(starts)
