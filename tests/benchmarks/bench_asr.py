"""ASR: real-time factor, partial latency, end of speech → final, service ÷ library, word error rates.

Every clip is spoken by an espeak-ng voice the models were not built around (tests/voices.py); the timed
figures pool RUNS passes over the clips and give the range of the passes' own P50s as their spread. Word error
rates also cover two people reading (tests/human_speech.py)."""

import contextlib
import time

import grpc
import numpy as np
from avatar.asr.v1 import asr_pb2, asr_pb2_grpc


from core.asr.backends.whisper_ct2 import WhisperCt2Backend
from services.asr.config import AsrSettings
from tests.benchmarks.report import Section, met, ms, p50, p95
from tests.grpc_helpers import CHUNK_S, asr_requests
from tests.human_speech import RECORDINGS, hear
from tests.noisy_neighbour import busy_core
from tests.speech import SENTENCES, library_text, library_whisper, says_twice, wer
from tests.voices import QUESTIONS, UNFAMILIAR, Utterance, say

SHORT = SENTENCES[:4]  # ~3 s each
WER_SENTENCES = SENTENCES[:8]
LONG = [SENTENCES[i] + " " + SENTENCES[i + 4] for i in range(4)]  # ~8 s each
RUNS = 3
FINAL_LATE_MS = AsrSettings.model_fields["final_late_ms"].default


def _stream(stub, utterance: Utterance, paced: bool, partials: bool):
    """Send speech + 1 s of silence; time the last voiced sample, first partial, end of turn and final, and keep
    the final's words."""
    audio = np.concatenate([utterance.samples, np.zeros(16000, np.float32)])
    marks = {}
    speech_chunks = int(utterance.voiced_end_s / CHUNK_S) + 1  # requests up to the chunk of the last voiced sample

    def requests():
        for i, request in enumerate(asr_requests(audio, speed=1.0 if paced else 0.0, partials=partials,
                                                 end_of_turn=asr_pb2.RecognitionConfig.END_OF_TURN_SILENCE)):
            yield request
            if i == speech_chunks:  # the chunk holding the last voiced sample was just sent (request 0: the config)
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
            marks["text"] = f"{marks.get('text', '')} {response.hypothesis.transcript}".strip()
        else:
            marks.setdefault("partial", now)
    marks["start"] = start
    return marks


def run(stack) -> Section:
    threads = AsrSettings().threads
    section = Section(f"ASR (Whisper base int8, CTranslate2, {threads} thread{'s' * (threads > 1)})")
    backend = WhisperCt2Backend(threads=threads)
    backend.load()
    with grpc.insecure_channel(stack.address("asr")) as channel:
        stub = asr_pb2_grpc.AsrServiceStub(channel)
        for label, texts in (("3 s", SHORT), ("8 s", LONG)):
            clips = [say(text, UNFAMILIAR[i % len(UNFAMILIAR)]) for i, text in enumerate(texts)]
            direct, rtf, after_eot, after_speech, partial, service = [], [], [], [], [], []
            heard = []  # (said, the paced final)
            passes = []  # per pass: (end of turn → final, service ÷ library) P50s
            for _ in range(RUNS):
                first = len(after_eot)
                for clip, text in zip(clips, texts):
                    t0 = time.perf_counter()
                    backend.transcribe(clip.samples, "", "en")
                    direct.append(time.perf_counter() - t0)
                    rtf.append(direct[-1] / (clip.samples.size / 16000))
                    marks = _stream(stub, clip, paced=True, partials=True)
                    after_eot.append(marks["final"] - marks["end_of_turn"])
                    heard.append((text, marks.get("text", "")))
                    after_speech.append(marks["final"] - marks["speech_end"])
                    if "partial" in marks:
                        partial.append(marks["partial"] - marks["start"])
                    unpaced = _stream(stub, clip, paced=False, partials=False)
                    # What the service adds to one decode: the whole stream, less the end-of-turn silence it must
                    # wait out.
                    service.append(unpaced["final"] - unpaced["start"])
                passes.append((p50(after_eot[first:]), p50(service[first:]) / p50(direct[first:])))
            seconds = np.mean([c.samples.size for c in clips]) / 16000
            section.add(f"{label} ({seconds:.1f} s): real-time factor, library", f"{p50(rtf):.3f} P50")
            eot_spread = f"{ms(min(p[0] for p in passes))}–{ms(max(p[0] for p in passes))}"
            section.add(f"{label}: end of turn → final",
                        f"{ms(p50(after_eot))} P50, {ms(p95(after_eot))} P95 ({met(p50(after_eot), 0.3)}; the "
                        f"passes' P50s {eot_spread})", "≤ 300 ms P50")
            section.add(f"{label}: last voiced sample → final (silence rule: incl. 500 ms end-of-turn silence)",
                        f"{ms(p50(after_speech))} P50, {ms(p95(after_speech))} P95")
            section.add(f"{label}: word error rate of these finals (the beams' reading where it came within "
                        f"{FINAL_LATE_MS} ms of the end of turn, else the pause's)", f"{wer(heard):.1%}")
            if partial:
                section.add(f"{label}: stream start → first partial", f"{ms(p50(partial))} P50")
            ratio = p50(service) / p50(direct)
            section.add(f"{label}: service ÷ library (whole clip sent at once, partials off)",
                        f"{ratio:.2f} ({ms(p50(service))} vs {ms(p50(direct))}; {met(ratio, 1.10, '{:.2f}'.format)}; "
                        f"the passes' {min(p[1] for p in passes):.2f}–{max(p[1] for p in passes):.2f})",
                        "≤ 1.10")
        # The final transcripts beside the library's own decode of the same audio (faster-whisper's transcribe:
        # the whole clip in one 30 s window, beam search 5).
        library = library_whisper(threads)
        pooled = {group: ([], []) for group in ("clean", "noisy", "human clean", "human noisy")}
        for voice in UNFAMILIAR:
            for spoken, group in ((voice, "clean"), (voice.noisy(), "noisy")):
                pairs, full = [], []
                for text in WER_SENTENCES:
                    samples = say(text, spoken).samples
                    pairs.append((text, _final_text(stub, samples)))
                    full.append((text, library_text(library, samples)))
                pooled[group][0].extend(pairs)
                pooled[group][1].extend(full)
                section.add(f"word error rate, voice {spoken.name}: final / library", f"{wer(pairs):.1%} / {wer(full):.1%}")
        for name, speed, neighbour in (("1x", 1.0, False), ("2x", 2.0, False), ("3x", 3.0, False),
                                       ("3x, one core busy", 3.0, True)):
            with busy_core() if neighbour else contextlib.nullcontext():
                said = [_final_text(stub, say(question, voice).samples, speed)
                        for voice in UNFAMILIAR for question in QUESTIONS]
            loops = sum(map(says_twice, said))
            section.add(f"short questions said twice in their final (a loop), streamed at {name}",
                        f"{loops} of {len(said)} ({met(loops, 0, str)})", "0")
        for recording in RECORDINGS:
            for snr_db, noise, group in ((None, "", "human clean"), (20.0, " + room/fan 20 dB", "human noisy")):
                samples = hear(recording, snr_db).samples
                pairs = [(recording.text, _final_text(stub, samples))]
                full = [(recording.text, library_text(library, samples))]
                pooled[group][0].extend(pairs)
                pooled[group][1].extend(full)
                section.add(f"word error rate, {recording.reader} reading ({recording.name}){noise}: final / library",
                            f"{wer(pairs):.1%} / {wer(full):.1%}")
        for group, target in (("clean", 0.10), ("noisy", 0.15), ("human clean", 0.06), ("human noisy", None)):
            finals, full = (wer(pairs) for pairs in pooled[group])
            verdict = met(finals, target, "{:.1%}".format) if target is not None else "no target"
            voices = "synthetic voices" if "human" not in group else "human readers"
            section.add(f"word error rate of the finals, {voices}, {group.replace('human ', '')}",
                        f"{finals:.1%} ({verdict})", f"≤ {target:.0%}" if target is not None else "")
            section.add(f"… against the library's full decode of the same audio", f"{finals:.1%} vs {full:.1%} "
                        f"({met(finals, full + 0.01, '{:.1%}'.format)})", "≤ library + 1 point")
    section.notes.append(f"Paced runs stream 100 ms chunks in real time; the final's decode runs during the pause, "
                         f"and where it is not done {FINAL_LATE_MS} ms after the end of turn the pause's words are "
                         f"the final (the word error rates below send each clip at once, so every final is read "
                         f"with the beams). Timed figures: {RUNS} passes over four clips "
                         f"of each length, each clip in another of the unfamiliar voices. Word error rates: the "
                         f"first eight sentences spoken by espeak-ng voices the models were not built around "
                         f"(tests/voices.py), clean and with a room and a fan under them at 20 dB SNR; and two "
                         f"sentences of the CMU ARCTIC corpus read by a man and a woman (tests/human_speech.py).")
    return section


def _final_text(stub, speech: np.ndarray, speed: float = 0.0) -> str:
    audio = np.concatenate([speech, np.zeros(16000, np.float32)])
    finals = [r.hypothesis.transcript for r in stub.StreamingRecognize(asr_requests(audio, speed=speed), timeout=120)
              if r.WhichOneof("result") == "hypothesis" and r.hypothesis.is_final]
    return " ".join(finals)
