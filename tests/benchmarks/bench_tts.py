"""TTS: first audio after the first clause, real-time factor, service ÷ library."""

import time

import grpc
from avatar.tts.v1 import tts_pb2, tts_pb2_grpc

from core.tts.backends.piper_voice import PiperBackend
from core.tts.text_normalizer import normalize
from services.tts.clause_splitter import ClauseSplitter
from tests.benchmarks.report import Section, ms, p50, p95

REPLIES = [
    "Sure, I can help with that. Open the settings page, then choose the audio tab and pick your microphone.",
    "Good morning! The weather looks lovely today, so it might be a nice day for a walk in the park.",
    "That is a great question. Most people find that a little practice every day works better than long sessions.",
    "I would start with something simple, like pasta with tomatoes. It only takes twenty minutes to make.",
    "Well, the ocean covers most of our planet, and we have explored only a small part of it so far.",
]
TOKEN_GAP_S = 0.0125  # an LLM at 80 tokens/s


def _first_clause_tokens(tokens: list[str]) -> int:
    splitter = ClauseSplitter()
    for i, token in enumerate(tokens):
        if splitter.push(token):
            return i
    return len(tokens) - 1


def run(stack) -> Section:
    section = Section("TTS (Piper en_US-joe-medium, ONNX Runtime)")
    backend = PiperBackend()
    backend.load()
    after_clause, after_token, rtf, direct_total, service_total = [], [], [], [], []
    with grpc.insecure_channel(stack.address("tts")) as channel:
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        for reply in REPLIES:
            tokens = [w + " " for w in reply.split()]
            clause_end = _first_clause_tokens(tokens)
            sent = {}

            def requests():
                yield tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig())
                for i, token in enumerate(tokens):
                    if i == 0:
                        sent["first"] = time.perf_counter()
                    yield tts_pb2.SynthesizeRequest(text=token)
                    if i == clause_end:
                        sent["clause"] = time.perf_counter()
                    time.sleep(TOKEN_GAP_S)

            first_audio = None
            for response in stub.StreamingSynthesize(requests(), timeout=60):
                if response.WhichOneof("result") == "audio" and first_audio is None:
                    first_audio = time.perf_counter()
            after_clause.append(first_audio - sent["clause"])
            after_token.append(first_audio - sent["first"])

            start = time.perf_counter()
            utterance = backend.synthesize(normalize(reply), 1.0)
            direct_total.append(time.perf_counter() - start)
            rtf.append(direct_total[-1] / (utterance.audio.size / backend.voice.sample_rate))

            start = time.perf_counter()
            list(stub.StreamingSynthesize(iter([tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig()),
                                                tts_pb2.SynthesizeRequest(text=reply)]), timeout=60))
            service_total.append(time.perf_counter() - start)
    section.add("first audio after the first clause is complete", f"{ms(p50(after_clause))} P50, {ms(p95(after_clause))} P95", "≤ 150 ms")
    section.add("first audio after the first token (tokens at 80/s)", f"{ms(p50(after_token))} P50")
    section.add("real-time factor, library", f"{p50(rtf):.3f} P50", "≤ 0.1")
    section.add("service ÷ library, whole reply", f"{p50(service_total) / p50(direct_total):.2f}")
    section.notes.append("The service speaks clause by clause; the library call speaks the reply in one go.")
    return section
