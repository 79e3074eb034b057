"""The per-model containers for real: the images `make images` built, brought up from the real
docker-compose.yml (Docker Compose or podman-compose), every health check passed, one spoken turn through the
gateway container, then the SDA container killed mid-reply. The project is torn down afterwards, volumes included.
"""

import asyncio
import json
import time
import urllib.request

import cv2
import httpx
import pytest
import websockets
from skimage import data

from services.gateway import media_messages
from tests.consent import consent_files, consent_form
from tests.containers import ComposeStack
from tests.media_files import probe_mp4, wav_bytes
from tests.speech import speak, wer
from tests.test_gateway_ws import next_event, send_speech

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1500)]

QUESTION = "Hello! What is your name?"
LONG_QUESTION = "Please tell me a long story about a brave little boat on the sea."


@pytest.fixture(scope="module")
def compose_stack():
    stack = ComposeStack()
    try:
        stack.up()
        ready = stack.wait_healthy()
        print("healthy after (s): " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in sorted(ready.items())))
        yield stack
    finally:
        stack.down()
        assert not stack.containers(), "compose down left containers behind"


def gateway_url(stack: ComposeStack, path: str) -> str:
    return f"http://127.0.0.1:{stack.port}{path}"


async def open_session(stack: ComposeStack):
    ws = await websockets.connect(f"ws://127.0.0.1:{stack.port}/ws", max_size=None)
    await ws.send(json.dumps({"type": "hello", "version": 1, "token": stack.token, "audio": {"sample_rate": 16000}}))
    await next_event(ws, "ready")
    return ws


def test_only_the_gateway_is_published(compose_stack):
    """The stages speak unauthenticated gRPC with reflection: no host port of theirs may be open."""
    containers = compose_stack.containers()
    for service, name in containers.items():
        ports = compose_stack.engine_run("port", name).stdout.split()
        if service == "gateway":
            assert any(p.endswith(f"127.0.0.1:{compose_stack.port}") for p in ports), ports
        else:
            assert not ports, f"{service} publishes {ports}"


def test_the_gateway_container_serves_the_built_browser_app(compose_stack):
    page = urllib.request.urlopen(gateway_url(compose_stack, "/"), timeout=10).read().decode()
    assert "<script" in page and "not built" not in page
    ready = json.loads(urllib.request.urlopen(gateway_url(compose_stack, "/readyz"), timeout=10).read())
    assert ready == {"ready": True}, ready  # the details are on the metrics port, which compose does not publish


def test_the_gateway_container_answers_a_wav_with_an_mp4(compose_stack, tmp_path):
    """The REST API's WAV → MP4 runs ffmpeg inside the gateway image."""
    audio = speak("Good morning, it is nice to see you again.")
    reply = httpx.post(gateway_url(compose_stack, "/v1/avatar/video"), timeout=240,
                       headers={"Authorization": f"Bearer {compose_stack.token}"},
                       files={"audio": ("a.wav", wav_bytes(audio))})
    assert reply.status_code == 200 and reply.headers["content-type"] == "video/mp4", reply.text[:300]
    info = probe_mp4(reply.content, tmp_path)
    assert {s["codec_type"] for s in info["streams"]} == {"video", "audio"}
    assert abs(float(info["format"]["duration"]) - audio.size / 16000) < 0.3


def test_the_containers_mark_speech_and_sign_videos(compose_stack):
    """The TTS image marks what it speaks and the gateway image signs videos and checks files: their model files
    and native libraries made it into the images."""
    headers = {"Authorization": f"Bearer {compose_stack.token}"}

    def check(content: bytes) -> dict:
        found = httpx.post(gateway_url(compose_stack, "/v1/provenance"), headers=headers, timeout=120,
                           files={"file": ("f", content)})
        assert found.status_code == 200, found.text[:300]
        return found.json()

    speech = httpx.post(gateway_url(compose_stack, "/v1/audio/speech"), headers=headers, timeout=120,
                        json={"input": "Your table for two is booked for eight tonight."})
    assert speech.status_code == 200 and check(speech.content)["watermarked"] is True
    video = httpx.post(gateway_url(compose_stack, "/v1/avatar/video"), headers=headers, timeout=240,
                       files={"audio": ("a.wav", speech.content)})
    manifest = check(video.content)["manifest"]
    assert manifest["generated"] is True and manifest["state"] == "Valid" and not manifest["problems"]


def test_the_shared_avatars_volume_is_writable_by_the_worker_user(compose_stack):
    """A fresh named volume takes the image's /data/avatars (uid 10001), whichever container mounts it first."""
    worker = compose_stack.containers()["worker"]
    result = compose_stack.engine_run("exec", worker, "python", "-c",
                                      "import os, pathlib; p = pathlib.Path('/data/avatars/.probe'); p.write_text('x');"
                                      " p.unlink(); print(os.getuid())")
    assert result.returncode == 0 and result.stdout.strip() == "10001", result.stderr


def test_cpu_images_carry_the_cpu_build_of_torch_and_the_gateway_none(compose_stack):
    """PyPI's default torch is the CUDA build (GBs of NVIDIA libraries); the CPU images must not carry it. The
    gateway serves, it does not train: no torch, no training code."""
    containers = compose_stack.containers()
    for service in ("llm", "sda", "worker"):
        result = compose_stack.engine_run("exec", containers[service], "python", "-c",
                                          "import importlib.metadata as m, torch; print(torch.__version__, "
                                          "any(d.metadata['Name'].startswith('nvidia-') for d in m.distributions()))")
        assert result.stdout.split() == ["2.13.0+cpu", "False"], (service, result.stdout, result.stderr[-500:])
    result = compose_stack.engine_run("exec", containers["gateway"], "python", "-c",
                                      "import importlib.util as u, pathlib; print(*(u.find_spec(m) is not None for m "
                                      "in ('torch', 'pytorch_lightning', 'yt_dlp')), pathlib.Path('pipelines').exists())")
    assert result.stdout.split() == ["False"] * 4, result.stdout + result.stderr


def test_a_photo_becomes_an_avatar_through_the_worker_container(compose_stack):
    """The gateway queues the job in Redis, the worker container makes the avatar on the shared volume, and the
    SDA container lists it."""
    auth = {"Authorization": f"Bearer {compose_stack.token}"}
    photo = cv2.imencode(".png", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))[1].tobytes()
    reply = httpx.post(gateway_url(compose_stack, "/v1/avatars"), files={"photo": ("me.png", photo), **consent_files()},
                       data={"name": "Boxed", **consent_form()}, headers=auth, timeout=30)
    assert reply.status_code == 202, reply.text
    avatar_id = reply.json()["avatar_id"]
    deadline = time.monotonic() + 300
    while (status := httpx.get(gateway_url(compose_stack, f"/v1/avatars/{avatar_id}"), headers=auth).json())["state"] \
            not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(2)
    assert status["state"] == "done", (status, compose_stack.logs("worker")[-2000:])
    listed = httpx.get(gateway_url(compose_stack, "/v1/avatars"), headers=auth, timeout=30).json()["avatars"]
    assert avatar_id in listed


async def test_a_spoken_turn_through_the_containers_gets_a_transcript_a_reply_and_frames(compose_stack):
    ws = await open_session(compose_stack)
    try:
        await send_speech(ws, QUESTION, speed=1.0)
        final = None
        while final is None:
            event = await next_event(ws, "transcript", timeout=120)
            final = event if event["final"] else None
        assert wer([(QUESTION, final["text"])]) <= 0.2, final["text"]
        received = []
        end = await next_event(ws, "turn_end", timeout=240, media_out=received)
        assert end["reply"].strip(), "no reply text"
        frames = [m for m in received if m["kind"] == "video"]
        assert len(frames) >= 25, f"{len(frames)} video frames: less than a second"
    finally:
        await ws.close()


async def test_killing_the_sda_container_mid_reply_leaves_audio_with_a_warning(compose_stack):
    ws = await open_session(compose_stack)
    try:
        await send_speech(ws, LONG_QUESTION)
        while True:  # the first video frame of the reply
            raw = await asyncio.wait_for(ws.recv(), 240)
            if isinstance(raw, bytes) and media_messages.parse(raw)["kind"] == "video":
                break
        compose_stack.kill("sda")
        killed = time.monotonic()
        kinds = []
        warning = None
        while True:
            raw = await asyncio.wait_for(ws.recv(), 240)
            if isinstance(raw, bytes):
                kinds.append(media_messages.parse(raw)["kind"])
                continue
            event = json.loads(raw)
            if event["type"] == "warning" and event["code"] == "video_unavailable":
                warning = time.monotonic() - killed
            assert event["type"] != "error", event
            if event["type"] == "turn_end":
                break
        assert warning is not None, "no video_unavailable warning after the SDA container died"
        assert "audio" in kinds, "the reply's audio did not go on without the face"
        print(f"video_unavailable {warning * 1000:.0f} ms after the kill; {kinds.count('audio')} audio-only messages")
    finally:
        await ws.close()
    # The container comes back (restart policy or a start) and the next turn has video again.
    if not compose_stack.running(compose_stack.containers()["sda"]):
        compose_stack.start("sda")
    compose_stack.wait_healthy(services=("sda",), timeout=180)
    ws = await open_session(compose_stack)
    try:
        await send_speech(ws, QUESTION)
        received = []
        await next_event(ws, "turn_end", timeout=240, media_out=received)
        assert any(m["kind"] == "video" for m in received), "video did not come back with the SDA container"
    finally:
        await ws.close()
