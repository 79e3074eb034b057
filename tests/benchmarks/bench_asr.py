"""ASR: real-time factor, partial latency, end of speech → final, service ÷ library."""

import time

import grpc
import numpy as np
from avatar.asr.v1 import asr_pb2, asr_pb2_grpc

from core.asr.backends.whisper_ct2 import WhisperCt2Backend
from tests.benchmarks.report import Section, met, ms, p50, p95
from tests.grpc_helpers import CHUNK_S, asr_requests
from tests.speech import SENTENCES, speak, wer
from tests.voices import UNFAMILIAR, say

SHORT = SENTENCES[:4]  # ~3 s each
LONG = [SENTENCES[i] + " " + SENTENCES[i + 4] for i in range(4)]  # ~8 s each


def _stream(stub, speech: np.ndarray, paced: bool, partials: bool):
    """Send speech + 1 s of silence; time the end of speech, first partial, end of turn and final."""
    audio = np.concatenate([speech, np.zeros(16000, np.float32)])
    marks = {}
    speech_chunks = -(-speech.size // int(16000 * CHUNK_S))

    def requests():
        for i, request in enumerate(asr_requests(audio, speed=1.0 if paced else 0.0, partials=partials)):
            yield request
            if i == speech_chunks:  # the chunk holding the last speech sample was just sent
                marks["speech_end"] = time.perf_counter()
        marks.setdefault("speech_end", time.perf_counter())

    start = time.perf_counter()
    for response in stub.StreamingRecognize(requests(), timeout=120):
        now = time.perf_counter()
        if response.WhichOneof("result") == "event":
            if response.event.type == asr_pb2.SpeechEvent.END_OF_TURN:
                marks.setdefault("end_of_turn", now)
        elif response.hypothesis.is_final:
            marks.setdefault("final", now)
        else:
            marks.setdefault("partial", now)
    marks["start"] = start
    return marks


def run(stack) -> Section:
    section = Section("ASR (Whisper base int8, CTranslate2, 2 threads)")
    backend = WhisperCt2Backend()
    backend.load()
    with grpc.insecure_channel(stack.address("asr")) as channel:
        stub = asr_pb2_grpc.AsrServiceStub(channel)
        for label, texts in (("3 s", SHORT), ("8 s", LONG)):
            clips = [speak(t) for t in texts]
            direct, rtf, after_eot, after_speech, partial, service = [], [], [], [], [], []
            for clip in clips:
                t0 = time.perf_counter()
                backend.transcribe(clip, "", "en")
                direct.append(time.perf_counter() - t0)
                rtf.append(direct[-1] / (clip.size / 16000))
                marks = _stream(stub, clip, paced=True, partials=True)
                after_eot.append(marks["final"] - marks["end_of_turn"])
                after_speech.append(marks["final"] - marks["speech_end"])
                if "partial" in marks:
                    partial.append(marks["partial"] - marks["start"])
                unpaced = _stream(stub, clip, paced=False, partials=False)
                # What the service adds to one decode: the whole stream, less the end-of-turn silence it must wait out.
                service.append(unpaced["final"] - unpaced["start"])
            seconds = np.mean([c.size for c in clips]) / 16000
            section.add(f"{label} ({seconds:.1f} s): real-time factor, library", f"{p50(rtf):.3f} P50")
            section.add(f"{label}: end of turn → final",
                        f"{ms(p50(after_eot))} P50, {ms(p95(after_eot))} P95 ({met(p50(after_eot), 0.3)})", "≤ 300 ms P50")
            section.add(f"{label}: end of speech → final (incl. 500 ms end-of-turn silence)",
                        f"{ms(p50(after_speech))} P50, {ms(p95(after_speech))} P95")
            if partial:
                section.add(f"{label}: stream start → first partial", f"{ms(p50(partial))} P50")
            ratio = p50(service) / p50(direct)
            section.add(f"{label}: service ÷ library (whole clip sent at once, partials off)",
                        f"{ratio:.2f} ({ms(p50(service))} vs {ms(p50(direct))}; {met(ratio, 1.10, '{:.2f}'.format)})",
                        "≤ 1.10")
        for voice in UNFAMILIAR:
            for spoken in (voice, voice.noisy()):
                pairs = [(text, _final_text(stub, say(text, spoken).samples)) for text in SHORT]
                section.add(f"word error rate, voice {spoken.name}", f"{wer(pairs):.1%}")
    section.notes.append("Paced runs stream 100 ms chunks in real time; the final is usually decoded during the "
                         "pause, before the end of turn is declared. Word error rates: the first four sentences "
                         "spoken by espeak-ng voices the models were not built around (tests/voices.py), clean "
                         "and with a room and a fan under them at 20 dB SNR.")
    return section


def _final_text(stub, speech: np.ndarray) -> str:
    audio = np.concatenate([speech, np.zeros(16000, np.float32)])
    finals = [r.hypothesis.transcript for r in stub.StreamingRecognize(asr_requests(audio), timeout=120)
              if r.WhichOneof("result") == "hypothesis" and r.hypothesis.is_final]
    return " ".join(finals)
