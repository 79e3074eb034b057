"""The gateway's OpenAI-compatible REST, with real clients against the real services."""

import io
import json

import cv2
import httpx
import numpy as np
import pytest
import soundfile
from skimage import data

from tests import human_speech
from tests.consent import consent_files, consent_form
from tests.media_files import probe_mp4, wav_bytes
from tests.speech import speak, wer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(stack):
    with httpx.Client(base_url=f"http://{stack.address('gateway')}", timeout=180) as client:
        yield client


SENTENCE = "The library closes at six o'clock on Saturdays."


def test_transcriptions(api):
    audio = wav_bytes(np.concatenate([speak(SENTENCE), np.zeros(8000, np.float32)]))
    reply = api.post("/v1/audio/transcriptions", files={"file": ("a.wav", audio)}, data={"model": "default"})
    assert reply.status_code == 200 and wer([(SENTENCE, reply.json()["text"])]) <= 0.15
    verbose = api.post("/v1/audio/transcriptions", files={"file": ("a.wav", audio)},
                       data={"response_format": "verbose_json"}).json()
    assert len(verbose["words"]) >= 6 and verbose["duration"] > 2
    missing = api.post("/v1/audio/transcriptions", files={"file": ("a.wav", audio)}, data={"model": "whisper-9"})
    assert missing.status_code == 404 and "available" in missing.json()["error"]["message"]
    assert api.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"garbage")}).status_code == 400


def test_chat_completions_plain_and_streamed(api):
    body = {"messages": [{"role": "system", "content": "Your name is Bob."},
                         {"role": "user", "content": "Say hello in one short sentence."}], "max_tokens": 40}
    reply = api.post("/v1/chat/completions", json=body).json()
    assert reply["choices"][0]["message"]["content"].strip() and reply["choices"][0]["finish_reason"] in ("stop", "length")
    assert reply["usage"]["prompt_tokens"] > 10 and reply["usage"]["completion_tokens"] > 0
    with api.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as stream:
        lines = [line[6:] for line in stream.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) >= 2
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length") and chunks[-1]["usage"]["prompt_tokens"] > 10
    missing = api.post("/v1/chat/completions", json={**body, "model": "gpt-99"})
    assert missing.status_code == 404 and "SmolLM2" in missing.json()["error"]["message"]


def test_speech(api):
    reply = api.post("/v1/audio/speech", json={"input": "Hello, this is a test of the speech endpoint.", "voice": "default"})
    assert reply.status_code == 200 and reply.headers["content-type"] == "audio/wav"
    samples, rate = soundfile.read(io.BytesIO(reply.content))
    assert rate == 22050 and 1.5 < samples.size / rate < 6
    missing = api.post("/v1/audio/speech", json={"input": "hi", "voice": "nobody"})
    assert missing.status_code == 404 and "en_US-joe-medium" in missing.json()["error"]["message"]


def test_avatar_video_from_wav_and_from_a_photo(api, tmp_path):
    audio = speak("Good morning, it is nice to see you again.")
    seconds = audio.size / 16000
    reply = api.post("/v1/avatar/video", files={"audio": ("a.wav", wav_bytes(audio))})
    assert reply.status_code == 200 and reply.headers["content-type"] == "video/mp4"
    info = probe_mp4(reply.content, tmp_path)
    kinds = {s["codec_type"] for s in info["streams"]}
    assert kinds == {"video", "audio"} and abs(float(info["format"]["duration"]) - seconds) < 0.3
    photo = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))[1].tobytes()
    sound = {"audio": ("a.wav", wav_bytes(audio))}
    without_consent = api.post("/v1/avatar/video", files={**sound, "photo": ("p.jpg", photo)})
    assert without_consent.status_code == 422 and "consent" in without_consent.json()["error"]["message"]
    no_video = api.post("/v1/avatar/video", files={**sound, "photo": ("p.jpg", photo), **consent_files()},
                        data=consent_form(consent_scopes="conversation,face"))
    assert no_video.status_code == 422 and "video_export" in no_video.json()["error"]["message"]
    with_photo = api.post("/v1/avatar/video", files={**sound, "photo": ("p.jpg", photo), **consent_files()},
                          data=consent_form())
    assert with_photo.status_code == 200
    told = check_provenance(api, with_photo.content)["manifest"]["generation"]
    assert told["avatar_id"] == "a one-off photo" and told["consent"]["person"] == consent_form()["consent_person"]
    assert len(told["consent"]["evidence_sha256"]) == 64
    blank = cv2.imencode(".png", np.full((300, 300, 3), 200, np.uint8))[1].tobytes()
    refused = api.post("/v1/avatar/video", files={**sound, "photo": ("p.png", blank), **consent_files()},
                       data=consent_form())
    assert refused.status_code == 400 and "no face" in refused.json()["error"]["message"]


def check_provenance(api, content: bytes, name: str = "file") -> dict:
    reply = api.post("/v1/provenance", files={"file": (name, content)})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_provenance_finds_the_mark_on_generated_speech_and_the_manifest_on_videos(api):
    def check(name: str, content: bytes) -> dict:
        return check_provenance(api, content, name)

    # The files are made before the calls: made between two of them on a busy machine, the client's kept-alive
    # connection could sit idle past the server's 5 s and be reused just as the server closed it.
    piper = wav_bytes(speak(SENTENCE))
    person = human_speech.hear(human_speech.RECORDINGS[0]).samples
    person_wav = wav_bytes(person)
    spoken = api.post("/v1/audio/speech", json={"input": "Your table for two is booked for eight tonight."}).content
    assert check("reply.wav", spoken)["watermarked"] is True
    assert check("piper.wav", piper)["watermarked"] is False  # the same voice, not through us
    assert check("person.wav", person_wav)["watermarked"] is False
    assert check("reply.wav", spoken)["manifest"] is None

    samples, rate = soundfile.read(io.BytesIO(spoken), dtype="float32")
    video = api.post("/v1/avatar/video", files={"audio": ("a.wav", wav_bytes(samples, rate))})
    found = check("video.mp4", video.content)
    manifest = found["manifest"]
    assert found["watermarked"] is True and manifest["generated"] is True and not manifest["problems"]
    assert manifest["state"] == "Valid" and "DEVELOPMENT" in manifest["signer"]  # signed, by a key nobody trusts
    assert manifest["generation"]["avatar_id"] == "default" and "carries this system's watermark" in manifest["generation"]["audio"]
    person_video = api.post("/v1/avatar/video", files={"audio": ("a.wav", wav_bytes(person))})
    told = check("person.mp4", person_video.content)["manifest"]["generation"]["audio"]
    assert "no watermark" in told

    junk = api.post("/v1/provenance", files={"file": ("x.bin", b"not media at all")})
    assert junk.status_code == 400 and junk.json()["error"]["message"]


def test_the_face_at_rest_and_with_its_eyes_closed(api):
    """What the page shows before anyone speaks, and blinks with: the same picture, only the eyes differ."""
    still = api.get("/v1/avatars/default/still")
    closed = api.get("/v1/avatars/default/still", params={"eyes": "closed"})
    assert still.status_code == 200 and closed.status_code == 200 and closed.headers["content-type"] == "image/jpeg"
    open_eyes, shut = (cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32)
                       for r in (still, closed))
    assert open_eyes.shape == shut.shape
    changed = np.abs(open_eyes - shut) > 25
    rows = np.nonzero(changed.any(axis=1))[0]
    assert changed.sum() > 100, "the eyelids did not come down"
    assert rows.max() < open_eyes.shape[0] / 2, "something below the eyes changed"
    assert api.get("/v1/avatars/default/still", params={"eyes": "half"}).status_code == 400


def test_openapi_documents_the_endpoints(api):
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/v1/audio/transcriptions", "/v1/chat/completions", "/v1/audio/speech", "/v1/avatar/video",
                 "/v1/avatars", "/v1/provenance"):
        assert path in paths
