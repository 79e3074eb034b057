"""Provenance: the audio watermark found after each step of the real media path, never on people, at what cost.

Marked: replies the TTS service speaks (its own mark, as the gateway receives them) and the same texts in the six
unfamiliar espeak voices marked by the same code. Unmarked: those voices and Piper's speech straight from the
library, and the human readers, clean and with a room under them. Each goes through: nothing; the gateway's Opus
(24 kbit/s at 16 kHz, decoded as a browser does); 16 → 48 → 16 kHz resampling; and headless Chromium playing it
through Web Audio into a MediaRecorder (WebM/Opus, the browser's own encoder), as a person recording the page would.
"""

import base64
import io
import shutil
import time

import grpc
import numpy as np
import soundfile
from avatar.tts.v1 import tts_pb2, tts_pb2_grpc
from playwright.sync_api import sync_playwright

from core.asr.backends.whisper_ct2 import WhisperCt2Backend
from core.audio import resample
from core.provenance.origin import decode_audio
from core.provenance.watermark import DEFAULT_WATERMARK_DIR, MARKED, Watermark
from core.tts.backends.piper_voice import PiperBackend
from core.tts.text_normalizer import normalize
from services.tts.clause_splitter import ClauseSplitter
from services.tts.config import TtsSettings
from tests import human_speech
from tests.benchmarks.bench_tts import REPLIES
from tests.benchmarks.report import Section, met, met_at_least, ms, p50, p95
from tests.media_files import through_opus, wav_bytes
from tests.speech import SENTENCES, wer
from tests.voices import RATE, UNFAMILIAR, say

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TEXTS = REPLIES[:4]
_RECORD = """async (wav64) => {
  const bytes = Uint8Array.from(atob(wav64), c => c.charCodeAt(0));
  const context = new AudioContext();
  const buffer = await context.decodeAudioData(bytes.buffer);
  const source = context.createBufferSource();
  source.buffer = buffer;
  const sink = context.createMediaStreamDestination();
  source.connect(sink);
  const recorder = new MediaRecorder(sink.stream, {mimeType: "audio/webm;codecs=opus"});
  const parts = [];
  recorder.ondataavailable = (e) => parts.push(e.data);
  const stopped = new Promise((resolve) => (recorder.onstop = resolve));
  recorder.start();
  source.start();
  await new Promise((resolve) => (source.onended = resolve));
  await new Promise((resolve) => setTimeout(resolve, 200));
  recorder.stop();
  await stopped;
  const blob = new Blob(parts, {type: "audio/webm"});
  const out = new Uint8Array(await blob.arrayBuffer());
  let text = "";
  for (let i = 0; i < out.length; i += 0x8000) text += String.fromCharCode(...out.subarray(i, i + 0x8000));
  await context.close();
  return btoa(text);
}"""


def _tts(stub, text: str) -> np.ndarray:
    requests = iter([tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(sample_rate_hz=RATE)),
                     tts_pb2.SynthesizeRequest(text=text)])
    pcm = b"".join(r.audio.pcm for r in stub.StreamingSynthesize(requests, timeout=60)
                   if r.WhichOneof("result") == "audio")
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768


def _resampled(audio: np.ndarray) -> np.ndarray:
    return resample(resample(audio, RATE, 48000), 48000, RATE)


def _first_clause(text: str) -> str:
    splitter = ClauseSplitter()
    for word in text.split():
        if clauses := splitter.push(word + " "):
            return clauses[0]
    return text


def run(stack) -> Section:
    section = Section("Provenance (the audio watermark: PerthNet through ONNX Runtime, at TTS_WATERMARK_STRENGTH)")
    watermark = Watermark(DEFAULT_WATERMARK_DIR)
    piper = PiperBackend()
    piper.load()
    plain_piper = [resample(piper.synthesize(normalize(t), 1.0).audio, piper.voice.sample_rate, RATE) for t in TEXTS]
    with grpc.insecure_channel(stack.address("tts")) as channel:
        service = [_tts(tts_pb2_grpc.TtsServiceStub(channel), t) for t in TEXTS]
    espeak = [say(t, v).samples for v in UNFAMILIAR for t in TEXTS[:2]]
    humans = [human_speech.hear(r, snr).samples for r in human_speech.RECORDINGS for snr in (None, 20.0)]
    strength = TtsSettings().watermark_strength
    marked = {"TTS service (Piper joe)": service,
              "6 unfamiliar voices": [watermark.mark(a, RATE, strength) for a in espeak]}
    unmarked = {"Piper, not through the service": plain_piper, "6 unfamiliar voices": espeak,
                "human readers (clean, room 20 dB)": humans}

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
                                    args=["--autoplay-policy=no-user-gesture-required", "--disable-gpu"])
        page = browser.new_page()

        def chromium(audio: np.ndarray) -> np.ndarray:
            webm = base64.b64decode(page.evaluate(_RECORD, base64.b64encode(wav_bytes(audio)).decode()))
            return decode_audio(webm, 600)

        paths = {"as made": lambda a: a, "gateway Opus 24 kbit/s": lambda a: through_opus(a, RATE, 24),
                 "16 → 48 → 16 kHz": _resampled, "Chromium recording (WebM/Opus)": chromium}
        for path, step in paths.items():
            for name, clips in marked.items():
                found = [watermark.score(step(a), RATE) >= MARKED for a in clips]
                rate = np.mean(found)
                section.add(f"detected: {name}, {path}", f"{rate:.0%} ({sum(found)}/{len(found)})",
                            f"≥ 95%: {met_at_least(rate, 0.95, lambda v: f'{v:.0%}')}")
            for name, clips in unmarked.items():
                false = [watermark.score(step(a), RATE) >= MARKED for a in clips]
                section.add(f"false positives: {name}, {path}", f"{sum(false)}/{len(false)}",
                            f"0: {met(sum(false), 0, str)}")
        browser.close()

    first_clauses = [resample(piper.synthesize(normalize(_first_clause(t)), 1.0).audio, piper.voice.sample_rate, RATE)
                     for t in REPLIES]
    marking, per_second = [], []
    for clip in first_clauses * 3:
        start = time.perf_counter()
        watermark.mark(clip, RATE, strength)
        marking.append(time.perf_counter() - start)
        per_second.append(marking[-1] / (clip.size / RATE))
    section.add("added to the first audio (marking the first clause)", f"{ms(p50(marking))} P50, {ms(p95(marking))} P95",
                f"a few ms: {met(p50(marking), 0.010)}")
    section.add("CPU per second of audio (one thread)", f"{ms(p50(per_second))} P50")

    whisper = WhisperCt2Backend()
    whisper.load()
    pairs = {"unmarked": [], "marked": []}
    for sentence in SENTENCES[:12]:
        audio = resample(piper.synthesize(normalize(sentence), 1.0).audio, piper.voice.sample_rate, RATE)
        for kind, clip in (("unmarked", audio), ("marked", watermark.mark(audio, RATE, strength))):
            pairs[kind].append((sentence, " ".join(w.text for w in whisper.transcribe(clip, "", "en"))))
    before, after = wer(pairs["unmarked"]), wer(pairs["marked"])
    section.add("TTS round-trip word error rate (Whisper base), unmarked → marked", f"{before:.1%} → {after:.1%}",
                f"must not rise: {'met' if after <= before else f'missed by {after - before:.1%}'}")
    section.notes += [
        f"{len(TEXTS)} replies from the TTS service; {len(espeak)} clips of the six espeak voices (2 texts each); "
        f"{len(humans)} human clips (2 readers, clean and with room noise at 20 dB SNR); clips of 3-8 s.",
        "The mark is made for speech: tones and music can read as marked (a steady chord scored 0.77 here), so the "
        "check's verdict means something only on speech.",
        "Marking happens in the TTS stage, on each clause as it is synthesized; the first audio waits for the "
        "first clause's mark.",
    ]
    return section
