"""Every service's first message and chunks, fuzzed: random contract messages (any field, out-of-range enums,
NaNs, random bytes as audio, random unicode as text) get OK or a typed refusal — never INTERNAL or UNKNOWN — and
the service keeps serving."""

from collections import Counter, defaultdict

import grpc
import pytest
from avatar.asr.v1 import asr_pb2, asr_pb2_grpc
from avatar.common.v1 import common_pb2
from avatar.llm.v1 import llm_pb2, llm_pb2_grpc
from avatar.sda.v1 import sda_pb2, sda_pb2_grpc
from avatar.tts.v1 import tts_pb2, tts_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.runner.health import SERVING, status
from tests.fuzz_strategies import message

pytestmark = pytest.mark.e2e

# What a malformed request may get back; INTERNAL / UNKNOWN would mean an unhandled failure.
TYPED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
         grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION}
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# A fuzzed request still has to finish in test time: replies and synthesized text stay short.
SHORT_TEXT = st.text(max_size=120)
# Formats are drawn valid half of the time, so fuzzing also reaches past the config check.
FORMAT = {
    "sample_rate_hz": st.one_of(st.sampled_from([8000, 16000, 22050, 48000]), st.integers(-(2**31), 2**31 - 1)),
    "encoding": st.one_of(st.just(1), st.integers(-1, 4)),
    "channels": st.one_of(st.just(1), st.integers(-2, 3)),
}
WHOLE_SAMPLES = st.binary(max_size=6000).map(lambda b: b[: len(b) // 4 * 4])
BOUNDED = {
    "asr": {**FORMAT, "audio": st.one_of(WHOLE_SAMPLES, st.binary(max_size=6000)),
            "end_of_turn_silence_ms": st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)),
            "max_end_of_turn_silence_ms": st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)),
            "end_of_turn": st.one_of(st.sampled_from([0, 1, 2]), st.integers(-(2**31), 2**31 - 1)),
            "language": st.one_of(st.sampled_from(["", "en", "auto", "en-GB"]), st.text(max_size=12)),
            "vocabulary": st.lists(st.one_of(st.text(max_size=20), st.text(min_size=60, max_size=80)), max_size=4),
            "model": st.sampled_from(["", "default", "no-such-model"])},
    "tts": {"text": SHORT_TEXT, "speaking_rate": st.floats(width=32, allow_nan=True, allow_infinity=True)},
    "sda": {**FORMAT, "idle_frames": st.just(False), "audio": st.binary(max_size=16000),
            "width": st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)),
            "height": st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)),
            "fps": st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)),
            "jpeg_quality": st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)),
            "face_image": st.one_of(st.just(b""), st.just(b""), st.binary(max_size=3000)),
            "audio_format": message(common_pb2.AudioFormat, FORMAT),
            "avatar_id": st.sampled_from(["", "default", "no-such-avatar", "../x", "ü" * 300])},
    "llm": {"max_tokens": st.integers(-5, 12), "user_text": SHORT_TEXT},
}


SEEN: dict[str, Counter] = defaultdict(Counter)  # outcomes per service, for the last test


def first_message(request_cls, config_cls, overrides: dict) -> st.SearchStrategy:
    """Any request, or (as often) one carrying a random config — the message that opens a stream."""
    configs = message(config_cls, overrides).map(lambda config: request_cls(config=config))
    return st.one_of(message(request_cls, overrides), configs)


def _outcome(call) -> grpc.StatusCode:
    try:
        for _ in call:
            pass
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _call(stack, name: str, stub_cls, rpc: str, request) -> None:
    """One fuzzed call (a message, or a list of messages for a stream): a typed outcome, and still serving."""
    stream = isinstance(request, list)
    with grpc.insecure_channel(stack.address(name)) as channel:
        call = getattr(stub_cls(channel), rpc)(iter(request) if stream else request, timeout=60)
        code = _outcome(call)
        details = call.details() if code != grpc.StatusCode.OK else ""
    shown = "" if stream else f" to {request}"
    assert code in TYPED, f"{name}.{rpc} answered {code.name}{shown}: {details}"
    SEEN[name][code.name] += 1
    assert status(stack.specs[name]) == SERVING, f"{name} stopped serving"


# A stream whose every field is drawn at random is almost never well formed (a config's format, its encoding, rate
# and channels, then only audio): a quarter of the streams are, so the fuzz also exercises recognition.
WELL_FORMED_ASR_CONFIG = asr_pb2.StreamingRecognizeRequest(config=asr_pb2.RecognitionConfig(
    format=common_pb2.AudioFormat(sample_rate_hz=16000, encoding=common_pb2.LINEAR16, channels=1)))
ASR_AUDIO = WHOLE_SAMPLES.map(lambda pcm: asr_pb2.StreamingRecognizeRequest(audio=pcm))


@given(first=st.one_of(first_message(asr_pb2.StreamingRecognizeRequest, asr_pb2.RecognitionConfig, BOUNDED["asr"]),
                       st.just(WELL_FORMED_ASR_CONFIG)),
       rest=st.one_of(st.lists(message(asr_pb2.StreamingRecognizeRequest, BOUNDED["asr"]), max_size=6),
                      st.lists(ASR_AUDIO, max_size=6)))
@FUZZ
def test_asr(stack, first, rest):
    _call(stack, "asr", asr_pb2_grpc.AsrServiceStub, "StreamingRecognize", [first, *rest])


@given(first=first_message(tts_pb2.SynthesizeRequest, tts_pb2.SynthesisConfig, BOUNDED["tts"]),
       rest=st.lists(message(tts_pb2.SynthesizeRequest, BOUNDED["tts"]), max_size=5))
@FUZZ
def test_tts(stack, first, rest):
    _call(stack, "tts", tts_pb2_grpc.TtsServiceStub, "StreamingSynthesize", [first, *rest])


@given(first=first_message(sda_pb2.AnimateRequest, sda_pb2.AnimateConfig, BOUNDED["sda"]),
       rest=st.lists(message(sda_pb2.AnimateRequest, BOUNDED["sda"]), max_size=5))
@FUZZ
def test_sda(stack, first, rest):
    _call(stack, "sda", sda_pb2_grpc.SdaServiceStub, "StreamingAnimate", [first, *rest])


@given(request=message(llm_pb2.GenerateRequest, BOUNDED["llm"]))
@FUZZ
def test_llm(stack, request):
    _call(stack, "llm", llm_pb2_grpc.LlmServiceStub, "Generate", request)


def test_the_fuzz_got_past_validation_as_well_as_refused():
    """Both kinds of outcome for every service: refusals, and requests that were served."""
    for name in ("asr", "tts", "sda", "llm"):
        assert SEEN[name]["OK"] and SEEN[name]["INVALID_ARGUMENT"], f"{name}: {dict(SEEN[name])}"
