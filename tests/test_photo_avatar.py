"""One photo → a new avatar: posted to the gateway, fine-tuned in the background, then animated by id."""

import time

import cv2
import grpc
import httpx
import numpy as np
import pytest
from skimage import data

from avatar.common.v1 import common_pb2
from avatar.sda.v1 import sda_pb2, sda_pb2_grpc
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
    reply = httpx.post(f"http://{stack.address('gateway')}/v1/avatars", files={"photo": ("p.png", png(image))})
    assert reply.status_code == 422 and reason in reply.json()["detail"]


def test_a_photo_becomes_an_avatar_that_talks(stack):
    base = f"http://{stack.address('gateway')}"
    reply = httpx.post(f"{base}/v1/avatars", files={"photo": ("me.png", png(data.astronaut()))}, data={"name": "Eileen"})
    assert reply.status_code == 202
    avatar_id = reply.json()["avatar_id"]
    deadline = time.monotonic() + 240
    progress = []
    while True:
        status = httpx.get(f"{base}/v1/avatars/{avatar_id}").json()
        progress.append(status["progress"])
        if status["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status["state"] == "done", status
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
