"""The data pipeline end to end, through its CLI, on a talking video the test makes and serves over HTTP:
two voices, one face, a planted garbled clip and a turn off camera. Training steps run a few steps only; the
services then load what was made."""

import csv
import functools
import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import soundfile as sf
import websockets
from avatar.llm.v1 import llm_pb2, llm_pb2_grpc
from avatar.sda.v1 import sda_pb2, sda_pb2_grpc
from avatar.tts.v1 import tts_pb2, tts_pb2_grpc

from core.consent import Withdrawals
from tests.grpc_helpers import asr_requests, with_silence
from tests.speech import SENTENCES, speak, wer
from tests.stack import ROOT, Stack
from tests.synthetic_video import make_talking_video, pausy_conversation
from tests.test_gateway_ws import next_event, send_speech
from tests.test_sda import animate, frames_of
from tests.test_tts import pcm, synthesize
from tests.voices import UNFAMILIAR, say

pytestmark = pytest.mark.slow

AVATAR = "pipeline-test"
QUICK = ["--asr-steps", "5", "--tts-size", "tiny", "--tts-epochs", "1", "--llm-steps", "3", "--sda-steps", "3"]


def pipeline(*args, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines", *args, "--data-dir", str(data_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The test video on a local HTTP server (yt-dlp downloads it for real), and a reference clip of the target."""
    folder = tmp_path_factory.mktemp("served")
    video = make_talking_video(folder / "talk.mp4")
    sf.write(folder / "reference.wav", speak(SENTENCES[10]), 16000)
    sf.write(folder / "consent.wav", speak("I agree that my face and my voice make this avatar."), 16000)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield video, folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def made(served, stack, tmp_path_factory):
    video, folder, url = served
    data_dir = tmp_path_factory.mktemp("data")
    result = pipeline("all", "--dataset", "talk", "--url", f"{url}/talk.mp4", "--reference",
                      str(folder / "reference.wav"), "--avatars-dir", str(stack.avatars_dir), "--avatar-id", AVATAR,
                      "--persona-name", "Robin", "--consent-person", "Robin Example", "--consent-evidence",
                      str(folder / "consent.wav"), *QUICK, data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    yield video, data_dir / "talk", result
    shutil.rmtree(stack.avatars_dir / AVATAR, ignore_errors=True)
    Withdrawals(stack.avatars_dir).path(AVATAR).unlink(missing_ok=True)  # the next run publishes it again


def _overlap(a0, a1, b0, b1) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _clip_of(clips: list[dict], turn) -> dict:
    return max(clips, key=lambda c: _overlap(c["start_s"], c["end_s"], turn.start_s, turn.end_s))


def test_every_step_reports_progress_and_writes_a_manifest(made):
    _, root, result = made
    steps = ["create_dataset", "diarize", "clip", "transcribe", "review", "finetune_asr", "retranscribe",
              "finetune_tts", "finetune_llm", "sda_dataset", "train_sda", "publish"]
    assert sorted(p.stem for p in (root / "manifests").glob("*.json")) == sorted(steps)
    assert "it/s" in result.stderr or "clip/s" in result.stderr  # progress bars
    assert not list(root.rglob("*.partial*")), "a step left a half-written file behind"


def test_diarization_keeps_the_target_and_drops_the_other_voice(made):
    video, root, _ = made
    segments = [s for entry in json.loads((root / "diarization.json").read_text()) for s in entry["segments"]]
    kept = [(s["start_s"], s["end_s"]) for s in segments if s["target"]]
    for speaker, bound in (("target", None), ("other", None)):
        total = sum(b - a for a, b in video.speech(speaker))
        covered = sum(_overlap(a, b, c, d) for a, b in video.speech(speaker) for c, d in kept)
        if speaker == "target":
            assert covered / total >= 0.9, f"kept {covered / total:.0%} of the target's speech"
        else:
            assert covered / total < 0.1, f"kept {covered / total:.0%} of the other voice"


def test_clips_are_1_to_8_seconds_with_face_tracks_and_the_faceless_turn_marked(made):
    video, root, _ = made
    clips = json.loads((root / "manifests" / "clip.json").read_text())["clips"]
    assert len(clips) >= 5
    assert all(1.0 <= c["end_s"] - c["start_s"] <= 8.0 for c in clips)
    faceless = next(t for t in video.turns if not t.face)
    assert _clip_of(clips, faceless)["face"] is None
    with_face = [c for c in clips if c["face"]]
    assert len(with_face) == len(clips) - 1
    for clip in with_face:
        frames = np.load(root / clip["face"])["frames"]
        assert frames.shape[1:] == (128, 96, 3)
        assert abs(len(frames) - (clip["end_s"] - clip["start_s"]) * 25) <= 2


def test_transcripts_exist_and_the_garbled_clip_tops_the_review_queue(made):
    video, root, _ = made
    clips = json.loads((root / "manifests" / "clip.json").read_text())["clips"]
    transcripts = json.loads((root / "transcripts.json").read_text())
    assert set(transcripts) == {c["id"] for c in clips}
    garbled = _clip_of(clips, next(t for t in video.turns if t.garbled))["id"]
    clean = [(t.text, transcripts[_clip_of(clips, t)["id"]]["text"]) for t in video.turns
             if t.speaker == "target" and not t.garbled]
    assert wer(clean) <= 0.15
    with (root / "review" / "queue.csv").open() as f:
        queue = list(csv.DictReader(f))
    assert queue[0]["clip_id"] == garbled
    assert [row["rank"] for row in queue] == [str(i) for i in range(1, len(queue) + 1)]
    assert (root / "review" / "oov.csv").is_file()
    with (root / "review" / "second_round.csv").open() as f:  # the round with the fine-tuned ASR
        assert {row["clip_id"] for row in csv.DictReader(f)} == set(transcripts)


def test_a_corrections_csv_edit_is_applied_on_the_next_run(made):
    video, root, _ = made
    clips = json.loads((root / "manifests" / "clip.json").read_text())["clips"]
    turn = next(t for t in video.turns if t.garbled)
    garbled = _clip_of(clips, turn)["id"]
    dropped = clips[-1]["id"]
    with (root / "corrections.csv").open("a", newline="") as f:
        csv.writer(f).writerows([[garbled, turn.text], [dropped, ""]])
    result = pipeline("review", "--dataset", "talk", data_dir=root.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    final = json.loads((root / "transcripts_final.json").read_text())
    assert final[garbled] == turn.text and dropped not in final
    manifest = json.loads((root / "manifests" / "review.json").read_text())
    assert manifest["corrections_applied"] == 2 and manifest["dropped"] == 1
    again = pipeline("review", "--dataset", "talk", data_dir=root.parent)
    assert "up to date" in again.stderr


def test_the_published_avatar_is_served_by_id(made, stack, served):
    bundle = stack.avatars_dir / AVATAR
    assert {"generator.pt", "persona.json", "llm-adapter.gguf", "asr.nemo", "still.png", "bundle.json",
            "consent.json"} <= {p.name for p in bundle.iterdir()}
    consent = json.loads((bundle / "consent.json").read_text())
    statement = (served[1] / "consent.wav").read_bytes()
    assert consent["person"] == "Robin Example" and consent["evidence"]["kind"] == "statement_audio"
    assert consent["evidence"]["sha256"] == hashlib.sha256(statement).hexdigest()
    assert set(consent["scopes"]) == {"conversation", "video_export", "voice", "face"}
    # the gateway lists it and reports it ready
    base = f"http://{stack.address('gateway')}"
    assert AVATAR in httpx.get(f"{base}/v1/avatars", timeout=30).json()["avatars"]
    assert httpx.get(f"{base}/v1/avatars/{AVATAR}", timeout=30).json()["state"] == "done"
    # text engine: the avatar's persona and LoRA adapter
    with grpc.insecure_channel(stack.address("llm")) as channel:
        request = llm_pb2.GenerateRequest(user_text="What is your name?", avatar_id=AVATAR,
                                          params=llm_pb2.GenerationParams(max_tokens=24, temperature=0.0))
        reply = "".join(r.delta for r in llm_pb2_grpc.LlmServiceStub(channel).Generate(request, timeout=120))
    assert reply.strip()
    assert f"loaded LoRA adapter {bundle / 'llm-adapter.gguf'}" in (stack.logs / "llm.log").read_text()
    # voice: asked for by the avatar's id
    audio, rate = pcm(synthesize(stack, ["Hello there, nice to meet you."], voice=AVATAR))
    assert rate and audio.size / rate > 0.3 and np.isfinite(audio).all()
    # face: the avatar's generator, animated from speech
    speech = speak(SENTENCES[3])
    with grpc.insecure_channel(stack.address("sda")) as channel:
        frames = frames_of(animate(sda_pb2_grpc.SdaServiceStub(channel), speech, avatar_id=AVATAR))
    assert len(frames) >= int(speech.size / 16000 * 25) - 2


async def test_the_gateway_converses_as_the_published_avatar(made, stack):
    async with websockets.connect(f"ws://{stack.address('gateway')}/ws", max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "avatar_id": AVATAR, "audio": {"sample_rate": 16000}}))
        await next_event(ws, "ready")
        await send_speech(ws, "Hello! Where do you live?")
        received = []
        end = await next_event(ws, "turn_end", timeout=120, media_out=received)
    assert end["reply"].strip()
    assert len([m for m in received if m["kind"] == "video"]) >= 10


def test_the_finetuned_asr_is_served_by_the_nemo_backend(made, redis_url):
    _, root, _ = made
    asr = Stack(redis_url, extra_env={"ASR_BACKEND": "nemo", "ASR_MODEL_PATH": str(root / "models" / "asr.nemo")})
    asr.start(["asr"])
    try:
        assert asr.wait("asr") == "SERVING"
        from avatar.asr.v1 import asr_pb2, asr_pb2_grpc

        with grpc.insecure_channel(asr.address("asr")) as channel:
            responses = list(asr_pb2_grpc.AsrServiceStub(channel).StreamingRecognize(
                asr_requests(with_silence(speak(SENTENCES[0]))), timeout=120))
    finally:
        asr.stop()
    events = [r.event.type for r in responses  # one turn (speech going on after a pause is said within it)
              if r.WhichOneof("result") == "event" and r.event.type != asr_pb2.SpeechEvent.SPEECH_RESUMED]
    assert events == [asr_pb2.SpeechEvent.SPEECH_START, asr_pb2.SpeechEvent.END_OF_TURN]


async def test_a_withdrawn_avatar_is_served_by_no_stage_and_not_published_again(made, stack, served):
    """The person withdraws their consent: one operator call, and no stage serves any part of the avatar (its face,
    voice, persona and knowledge were all served a moment before), and its id is refused from then on."""
    _, root, _ = made
    base = f"http://{stack.address('gateway')}"
    withdrawn = httpx.delete(f"{base}/admin/avatars/{AVATAR}", params={"reason": "the person asked"}, timeout=30)
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "withdrawn", withdrawn.text
    assert not (stack.avatars_dir / AVATAR).exists()
    assert AVATAR not in httpx.get(f"{base}/v1/avatars", timeout=30).json()["avatars"]
    assert httpx.get(f"{base}/v1/avatars/{AVATAR}", timeout=30).json()["state"] == "withdrawn"
    assert httpx.get(f"{base}/v1/avatars/{AVATAR}/still", timeout=30).status_code == 403
    assert httpx.get(f"{base}/admin/avatars/{AVATAR}/consent", timeout=30).status_code == 410
    # the voice and the face had been loaded by their stages; the persona and knowledge are read per request
    with pytest.raises(grpc.RpcError) as voice:
        synthesize(stack, ["Hello there."], voice=AVATAR)
    assert voice.value.code() == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(stack.address("tts")) as channel:
        voices = tts_pb2_grpc.TtsServiceStub(channel).ListVoices(tts_pb2.ListVoicesRequest(), timeout=30)
    assert AVATAR not in [v.name for v in voices.voices]
    with grpc.insecure_channel(stack.address("sda")) as channel:
        sda = sda_pb2_grpc.SdaServiceStub(channel)
        with pytest.raises(grpc.RpcError) as face:
            animate(sda, speak(SENTENCES[3]), avatar_id=AVATAR)
        listed = sda.ListAvatars(sda_pb2.ListAvatarsRequest(), timeout=30)
    assert face.value.code() == grpc.StatusCode.NOT_FOUND and AVATAR not in [a.avatar_id for a in listed.avatars]
    with grpc.insecure_channel(stack.address("llm")) as channel:
        request = llm_pb2.GenerateRequest(user_text="What is your name?", avatar_id=AVATAR)
        with pytest.raises(grpc.RpcError) as persona:
            list(llm_pb2_grpc.LlmServiceStub(channel).Generate(request, timeout=60))
    assert persona.value.code() == grpc.StatusCode.NOT_FOUND
    async with websockets.connect(f"ws://{stack.address('gateway')}/ws") as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "avatar_id": AVATAR}))
        assert (await next_event(ws, "error"))["code"] == "no_consent"
    again = pipeline("publish", "--dataset", "talk", "--avatars-dir", str(stack.avatars_dir), "--avatar-id", AVATAR,
                     "--consent-person", "Robin Example", "--consent-evidence", str(served[1] / "consent.wav"),
                     "--force", data_dir=root.parent)
    assert again.returncode == 2 and "withdrawn" in again.stderr and not (stack.avatars_dir / AVATAR).exists()


def test_bad_inputs_fail_clearly_and_leave_nothing_half_written(served, tmp_path):
    _, folder, url = served
    data = tmp_path / "data"
    bad_name = pipeline("create_dataset", "--dataset", "../escape", "--url", str(folder / "talk.mp4"), data_dir=data)
    assert bad_name.returncode == 2 and "dataset name" in bad_name.stderr
    assert not (tmp_path / "escape").exists()

    missing = pipeline("create_dataset", "--dataset", "d1", "--url", f"{url}/missing.mp4", data_dir=data)
    assert missing.returncode == 2 and "could not download" in missing.stderr
    assert not (data / "d1" / "manifests").exists() and not list((data / "d1").glob("*"))
    resumed = pipeline("create_dataset", "--dataset", "d1", "--url", f"{url}/talk.mp4", data_dir=data)
    assert resumed.returncode == 0 and (data / "d1" / "manifests" / "create_dataset.json").is_file()

    silent_video = tmp_path / "mute.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "2", "-an",
                    str(silent_video)], check=True)
    no_audio = pipeline("create_dataset", "--dataset", "d2", "--url", str(silent_video), data_dir=data)
    assert no_audio.returncode == 2 and "no audio track" in no_audio.stderr
    assert not (data / "d2" / "source").exists()

    quiet = tmp_path / "quiet.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi",
                    "-i", "anullsrc=r=16000:cl=mono", "-t", "3", "-shortest", str(quiet)], check=True)
    assert pipeline("create_dataset", "--dataset", "d3", "--url", str(quiet), data_dir=data).returncode == 0
    no_speech = pipeline("diarize", "--dataset", "d3", data_dir=data)
    assert no_speech.returncode == 2 and "no speech" in no_speech.stderr
    assert not (data / "d3" / "manifests" / "diarize.json").exists()

    early = pipeline("clip", "--dataset", "d3", data_dir=data)
    assert early.returncode == 2 and "run that step first" in early.stderr

    # an avatar without its person's consent is refused before anything is made
    unconsented = pipeline("all", "--dataset", "d4", "--url", str(folder / "talk.mp4"), data_dir=data)
    assert unconsented.returncode == 2 and "consent" in unconsented.stderr
    assert not (data / "d4" / "manifests").exists()
    lacking = pipeline("all", "--dataset", "d4", "--url", str(folder / "talk.mp4"), "--consent-person", "Robin",
                       "--consent-evidence", str(folder / "consent.wav"), "--consent-scopes", "conversation,sharing",
                       data_dir=data)
    assert lacking.returncode == 2 and "scopes" in lacking.stderr


def test_a_video_with_no_face_keeps_its_clips_for_audio_only_use(tmp_path):
    audio = with_silence(speak(SENTENCES[5]), speak(SENTENCES[6]), gap_s=1.0)
    wav, video = tmp_path / "speech.wav", tmp_path / "noface.mp4"
    sf.write(wav, audio, 16000)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:size=320x240:rate=25", "-i", str(wav),
                    "-shortest", "-c:a", "aac", str(video)], check=True)
    data = tmp_path / "data"
    for step in ("create_dataset", "diarize", "clip"):
        result = pipeline(step, "--dataset", "noface", "--url", str(video), data_dir=data)
        assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((data / "noface" / "manifests" / "clip.json").read_text())
    assert manifest["clips"] and manifest["with_face"] == 0
    assert all(c["face"] is None and (data / "noface" / c["audio"]).is_file() for c in manifest["clips"])


def test_pausy_speech_of_two_people_ends_up_in_clips_of_one_speaker(tmp_path):
    conversation = pausy_conversation(tmp_path / "pausy.wav", turns=5)
    target, other = conversation.speech("target"), conversation.speech("other")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:size=320x240:rate=25", "-i",
                    str(tmp_path / "pausy.wav"), "-shortest", "-c:a", "aac", str(tmp_path / "pausy.mp4")], check=True)
    reference = tmp_path / "reference.wav"
    sf.write(reference, say("This is how I sound when I talk for a while.", UNFAMILIAR[1]).samples, 16000)
    data = tmp_path / "data"
    for step in ("create_dataset", "diarize", "clip"):
        result = pipeline(step, "--dataset", "pausy", "--url", str(tmp_path / "pausy.mp4"), "--reference",
                          str(reference), data_dir=data)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "yield" in result.stderr  # the CLI's summary
    manifest = json.loads((data / "pausy" / "manifests" / "clip.json").read_text())
    clips = [(c["start_s"], c["end_s"]) for c in manifest["clips"]]
    assert all(1.0 <= b - a <= 8.0 for a, b in clips), clips
    assert manifest["yield"] >= 0.8, manifest["yield"]
    said = sum(b - a for a, b in target)
    assert sum(_overlap(*c, *t) for c in clips for t in target) / said >= 0.8  # against what was really said
    for clip in clips:  # one speaker: at most a sliver of the other's speech at a clip's edge
        assert sum(_overlap(*clip, *o) for o in other) <= 0.15, clip


def test_a_diarization_killed_midway_resumes_from_what_it_saved(tmp_path):
    conversation = pausy_conversation(tmp_path / "long.wav", turns=50)  # 5-6 minutes: chunks of speaker windows
    reference = tmp_path / "reference.wav"
    sf.write(reference, say("This is how I sound when I talk for a while.", UNFAMILIAR[1]).samples, 16000)
    data = tmp_path / "data"
    assert pipeline("create_dataset", "--dataset", "long", "--url", str(tmp_path / "long.wav"), data_dir=data).returncode == 0
    saved = data / "long" / "runs" / "diarize"
    process = subprocess.Popen([sys.executable, "-m", "pipelines", "diarize", "--dataset", "long", "--reference",
                                str(reference), "--data-dir", str(data)], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        while not list(saved.glob("embeddings-*.npy")) and process.poll() is None:
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        process.kill()
        process.wait()
    assert not (data / "long" / "manifests" / "diarize.json").exists()
    resumed = pipeline("diarize", "--dataset", "long", "--reference", str(reference), data_dir=data)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming an interrupted run" in resumed.stderr
    manifest = json.loads((data / "long" / "manifests" / "diarize.json").read_text())
    said = sum(b - a for a, b in conversation.speech("target"))
    assert manifest["target_speech_s"] == pytest.approx(said, rel=0.25) and not saved.exists()
