"""One photo → a new avatar: posted to the gateway, made by the avatar worker, then animated by id."""

import time

import cv2
import grpc
import httpx
import numpy as np
import pytest
from avatar.common.v1 import common_pb2
from avatar.sda.v1 import sda_pb2, sda_pb2_grpc
from skimage import data

from tests.consent import consent_files, consent_form
from tests.speech import speak, to_linear16

pytestmark = pytest.mark.e2e


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.mark.parametrize(
    "image, reason",
    [
        (np.full((300, 300, 3), 200, np.uint8), "no face"),
        (np.concatenate([data.astronaut()[:, :300]] * 2, axis=1), "2 faces"),
        (cv2.resize(data.astronaut(), (220, 220)), "at least 64 px"),
    ],
    ids=["no-face", "two-faces", "small-face"],
)
def test_unusable_photos_are_refused_with_a_reason(stack, image, reason):
    reply = httpx.post(f"http://{stack.address('gateway')}/v1/avatars",
                       files={"photo": ("p.png", png(image)), **consent_files()}, data=consent_form())
    assert reply.status_code == 422 and reason in reply.json()["error"]["message"]


def test_a_photo_without_its_persons_consent_is_refused_before_anything_is_made(stack):
    base = f"http://{stack.address('gateway')}"
    photo = {"photo": ("me.png", png(data.astronaut()))}
    missing = httpx.post(f"{base}/v1/avatars", files=photo, data={"name": "Nobody asked"})
    assert missing.status_code == 422 and "consent" in missing.json()["error"]["message"]
    voice_only = httpx.post(f"{base}/v1/avatars", files={**photo, **consent_files()},
                            data=consent_form(consent_scopes="conversation,voice"))
    assert voice_only.status_code == 422 and "face" in voice_only.json()["error"]["message"]


def test_an_oversized_photo_is_refused_whole(stack):
    too_big = png(data.astronaut()) + b"\0" * (10 * 1024 * 1024)
    reply = httpx.post(f"http://{stack.address('gateway')}/v1/avatars",
                       files={"photo": ("p.png", too_big), **consent_files()}, data=consent_form())
    assert reply.status_code == 413 and "exceeds" in reply.json()["error"]["message"]


def make(base: str, name: str) -> str:
    reply = httpx.post(f"{base}/v1/avatars", files={"photo": ("me.png", png(data.astronaut())), **consent_files()},
                       data={"name": name, **consent_form()})
    assert reply.status_code == 202
    return reply.json()["avatar_id"]


def follow(base: str, avatar_id: str, until=("done", "failed"), timeout: float = 240, every: float = 0.5) -> list[dict]:
    """The job's statuses, read every `every` s until its state is one of `until`."""
    deadline = time.monotonic() + timeout
    seen = []
    while not seen or (seen[-1]["state"] not in until and time.monotonic() < deadline):
        time.sleep(every if seen else 0)
        seen.append(httpx.get(f"{base}/v1/avatars/{avatar_id}").json())
    return seen


def test_a_photo_becomes_an_avatar_that_talks(stack):
    base = f"http://{stack.address('gateway')}"
    avatar_id = make(base, "Eileen")
    statuses = follow(base, avatar_id)
    assert statuses[-1]["state"] == "done", statuses[-1]
    progress = [s["progress"] for s in statuses]
    assert progress == sorted(progress)
    assert avatar_id in httpx.get(f"{base}/v1/avatars").json()["avatars"]

    fmt = common_pb2.AudioFormat(sample_rate_hz=16000, encoding=common_pb2.LINEAR16, channels=1)
    requests = [sda_pb2.AnimateRequest(config=sda_pb2.AnimateConfig(avatar_id=avatar_id, audio_format=fmt)),
                sda_pb2.AnimateRequest(audio=to_linear16(speak("Hello there, nice to meet you."))),
                sda_pb2.AnimateRequest(end_of_segment=sda_pb2.EndOfSegment())]
    with grpc.insecure_channel(stack.address("sda")) as channel:
        frames = [r.frame for r in sda_pb2_grpc.SdaServiceStub(channel).StreamingAnimate(iter(requests), timeout=60)
                  if r.WhichOneof("result") == "frame"]
    assert len(frames) > 25


def test_a_worker_killed_mid_job_leaves_it_failed_with_a_reason_and_the_next_job_runs(stack):
    base = f"http://{stack.address('gateway')}"
    first = make(base, "Killed")
    assert follow(base, first, until=("running", "done", "failed"), every=0.05)[-1]["state"] == "running"
    stack.kill("worker")
    second = make(base, "Next")
    failed = follow(base, first, timeout=30)[-1]  # the lease in the tests is 4 s
    assert failed["state"] == "failed" and "no heartbeat" in failed["error"], failed
    assert httpx.get(f"{base}/v1/avatars/{second}").json()["state"] == "queued"
    stack.start_one("worker")
    stack.wait("worker")
    assert follow(base, second)[-1]["state"] == "done"
