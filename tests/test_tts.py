"""The TTS contract with the real packaged Piper voice: intelligible, streaming, speech-like audio."""

import time

import grpc
import numpy as np
import pytest
from avatar.tts.v1 import tts_pb2, tts_pb2_grpc

from core.asr.backends.whisper_ct2 import WhisperCt2Backend
from core.audio import resample
from core.provenance.watermark import DEFAULT_WATERMARK_DIR, MARKED, Watermark
from tests.speech import SENTENCES, wer

pytestmark = pytest.mark.contract


def synthesize(stack, texts, voice="", rate=0, delay=0.0, sent_at=None):
    def requests():
        yield tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice=voice, sample_rate_hz=rate))
        for text in texts:
            if delay:
                time.sleep(delay)
            yield tts_pb2.SynthesizeRequest(text=text)
        if sent_at is not None:
            sent_at.append(time.perf_counter())

    with grpc.insecure_channel(stack.address("tts")) as channel:
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        out = []
        for response in stub.StreamingSynthesize(requests(), timeout=120):
            out.append((time.perf_counter(), response))
        return out


def pcm(responses) -> tuple[np.ndarray, int]:
    chunks = [r.audio for _, r in responses if r.WhichOneof("result") == "audio"]
    if not chunks:
        return np.zeros(0, np.float32), 0
    audio = np.concatenate([np.frombuffer(c.pcm, "<i2") for c in chunks]).astype(np.float32) / 32768
    return audio, chunks[0].format.sample_rate_hz


@pytest.fixture(scope="module")
def whisper():
    backend = WhisperCt2Backend()
    backend.load()
    return backend


def test_speech_is_intelligible(stack, whisper):
    pairs = []
    for sentence in SENTENCES[:10]:
        audio, rate = pcm(synthesize(stack, [sentence]))
        words = whisper.transcribe(resample(audio, rate, 16000), "", "en")
        pairs.append((sentence, " ".join(w.text for w in words)))
    assert wer(pairs) <= 0.10, pairs


def test_audio_is_speech(stack):
    text = "The weather is lovely today, so we are going for a walk in the park."
    responses = synthesize(stack, [text], rate=16000)
    audio, rate = pcm(responses)
    assert rate == 16000
    seconds = audio.size / rate
    assert 0.18 * len(text.split()) <= seconds <= 0.6 * len(text.split())  # 1.7-5.5 words a second
    assert np.mean(np.abs(audio) > 0.99) < 0.001  # no clipping
    frames = audio[: audio.size // 160 * 160].reshape(-1, 160)  # 10 ms frames
    loud = np.sqrt((frames**2).mean(axis=1)) > 0.01
    inside = loud[np.argmax(loud) : len(loud) - np.argmax(loud[::-1])]
    longest_gap = max((len(run) for run in "".join("1" if x else "0" for x in inside).split("1")), default=0)
    assert longest_gap * 0.01 < 0.8, f"a silence of {longest_gap * 10} ms inside one sentence"
    # Timestamps are contiguous and phoneme timings lie within the audio.
    chunks = [r.audio for _, r in responses if r.WhichOneof("result") == "audio"]
    for before, after in zip(chunks, chunks[1:]):
        assert after.start_s == pytest.approx(before.start_s + before.duration_s, abs=1e-3)
    phonemes = [p for c in chunks for p in c.phonemes]
    assert len(phonemes) > 20 and all(0 <= p.start_s < p.end_s <= seconds + 1e-3 for p in phonemes)
    assert {p.viseme for p in phonemes} >= {"PP", "aa"}


def test_first_audio_arrives_before_the_last_token(stack):
    reply = (
        "Sure, I can help with that. First, open the settings page and look for the audio section. "
        "Then pick your microphone from the list, and test it by speaking a few words. "
        "If the bar moves, everything works, and you can close the window."
    )
    tokens = [t + " " for t in reply.split()]
    sent = []
    responses = synthesize(stack, tokens, delay=0.05, sent_at=sent)
    first_audio = next(t for t, r in responses if r.WhichOneof("result") == "audio")
    assert first_audio < sent[0], "audio only started after the whole text was sent"
    assert responses[-1][1].WhichOneof("result") == "end"


def test_empty_text_gives_just_the_end_marker(stack):
    responses = synthesize(stack, [""])
    assert [r.WhichOneof("result") for _, r in responses] == ["end"]


def test_unknown_voice_and_oversized_text_are_refused(stack):
    with pytest.raises(grpc.RpcError) as err:
        synthesize(stack, ["hi"], voice="nobody")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "en_US-joe-medium" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        synthesize(stack, ["word " * 1000])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unspeakable_characters_are_skipped(stack):
    audio, _ = pcm(synthesize(stack, ["Hello ☃ world ✓ again."]))
    assert audio.size > 0


def test_voice_list(stack):
    with grpc.insecure_channel(stack.address("tts")) as channel:
        reply = tts_pb2_grpc.TtsServiceStub(channel).ListVoices(tts_pb2.ListVoicesRequest(), timeout=5)
    assert reply.default_voice == "en_US-joe-medium"
    assert reply.voices[0].gives_phoneme_timings and reply.voices[0].sample_rate_hz == 22050


def test_speech_is_marked_as_generated(stack):
    text = "The weather is lovely today, so we are going for a walk in the park."
    audio, rate = pcm(synthesize(stack, [text], rate=16000))
    assert Watermark(DEFAULT_WATERMARK_DIR).score(audio, rate) >= MARKED
