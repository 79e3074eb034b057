"""The TTS gRPC servicer: voice selection, request validation, and the mapping of synthesizer output."""

import asyncio
import functools
import logging
import time
from pathlib import Path

import grpc
from avatar.common.v1 import common_pb2
from avatar.tts.v1 import tts_pb2, tts_pb2_grpc

from core import audio
from core.avatar_bundle import AvatarBundle, is_default
from core.errors import BadRequest, NotFound
from core.provenance.watermark import Watermark
from core.tts.backends.base_backend import TtsBackend
from core.tts.backends.coqui_vits import CoquiVitsBackend, is_coqui_voice
from core.tts.backends.piper_voice import PiperBackend
from core.tts.visemes import viseme_of
from services.common import metrics
from services.common.streams import read_config
from services.tts.config import TtsSettings
from services.tts.engine import FLUSH, Chunk, StreamingSynthesizer
from services.common.priority_turns import PriorityTurns

log = logging.getLogger(__name__)


def make_voices(settings: TtsSettings) -> dict[str, TtsBackend]:
    """The default voice first, then every voice found in voices_dir."""
    if settings.backend == "coqui":
        default = CoquiVitsBackend(settings.voice_path, settings.use_cuda)
    else:
        default = PiperBackend(settings.voice_path, settings.use_cuda)
    voices = {default.voice.name: default}
    if settings.voices_dir:
        for path in sorted(Path(settings.voices_dir).iterdir()):
            if path.suffix == ".onnx":
                backend = PiperBackend(str(path), settings.use_cuda)
            elif is_coqui_voice(path):
                backend = CoquiVitsBackend(str(path), settings.use_cuda)
            else:
                continue
            voices.setdefault(backend.voice.name, backend)
    return voices


class TtsService(tts_pb2_grpc.TtsServiceServicer):
    service_name = tts_pb2.DESCRIPTOR.services_by_name["TtsService"].full_name

    def __init__(self, settings: TtsSettings):
        self._settings = settings
        self._voices = make_voices(settings)
        self._default = next(iter(self._voices))
        self._from_avatars: dict[str, Path] = {}  # voices loaded from avatars' bundles, and where from
        self._turns = PriorityTurns()
        self._loading = asyncio.Lock()
        self._watermark: Watermark | None = None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        tts_pb2_grpc.add_TtsServiceServicer_to_server(self, server)

    def load(self) -> None:
        for backend in self._voices.values():
            backend.load()
        if self._settings.watermark:
            self._watermark = Watermark(self._settings.watermark_dir)
            default = self._voices[self._default]
            self._watermark.mark(default.synthesize("Ready.", 1.0).audio, default.voice.sample_rate)  # warm-up
        else:
            log.warning("TTS_WATERMARK is off: the speech this service makes is NOT marked as generated")

    def _avatar_voices(self) -> dict[str, Path]:
        """Voices of published avatars (`<avatars_dir>/<id>/voice/`), named by the avatar's id."""
        if not self._settings.avatars_dir:
            return {}
        bundles = (AvatarBundle.at(self._settings.avatars_dir, i) for i in AvatarBundle.published(self._settings.avatars_dir))
        return {b.avatar_id: b.voice for b in bundles if is_coqui_voice(b.voice)}

    def _forget_removed(self) -> None:
        """Drop the loaded voices whose avatar's bundle is gone (withdrawn): nothing of them is served."""
        for name, folder in list(self._from_avatars.items()):
            if not is_coqui_voice(folder):
                del self._voices[name], self._from_avatars[name]
                log.info("forgot voice %s: its avatar's bundle is gone", name)

    async def _voice(self, name: str) -> TtsBackend:
        if is_default(name):
            return self._voices[self._default]
        self._forget_removed()
        if name in self._voices:
            return self._voices[name]
        folder = self._avatar_voices().get(name)
        if folder is None:
            known = [*self._voices, *self._avatar_voices()]
            raise NotFound(f"unknown voice {name!r}; available: {', '.join(known)}")
        async with self._loading:
            if name not in self._voices:  # loaded once, on first use
                backend = CoquiVitsBackend(str(folder), self._settings.use_cuda, name=name)
                await asyncio.to_thread(backend.load)
                self._voices[name] = backend
                self._from_avatars[name] = folder
        return self._voices[name]

    async def ListVoices(self, request, context):
        self._forget_removed()
        loaded = [
            tts_pb2.VoiceInfo(
                name=b.voice.name,
                language=b.voice.language,
                sample_rate_hz=b.voice.sample_rate,
                backend=b.voice.backend,
                gives_phoneme_timings=b.voice.gives_phoneme_timings,
            )
            for b in self._voices.values()
        ]
        on_disk = [
            tts_pb2.VoiceInfo(name=name, backend="coqui", gives_phoneme_timings=True)
            for name in self._avatar_voices()
            if name not in self._voices
        ]
        return tts_pb2.ListVoicesResponse(voices=loaded + on_disk, default_voice=self._default)

    async def StreamingSynthesize(self, request_iterator, context):
        first = await read_config(request_iterator)
        config = first.config
        backend = await self._voice(config.voice)
        rate = config.sample_rate_hz or backend.voice.sample_rate
        if not 8000 <= rate <= 48000:
            raise BadRequest(f"sample_rate_hz must be 8000-48000 (or 0 for the voice's own), got {rate}")
        speaking_rate = config.speaking_rate or 1.0
        if not 0.5 <= speaking_rate <= 2.0:
            raise BadRequest(f"speaking_rate must be 0.5-2.0, got {speaking_rate}")
        s = self._settings

        async def items():
            total = 0
            async for request in request_iterator:
                kind = request.WhichOneof("request")
                if kind == "flush":
                    yield FLUSH
                    continue
                if kind != "text":
                    raise BadRequest(f"after the config only `text` and `flush` messages are allowed, got `{kind}`")
                if len(request.text) > s.max_text_chars:
                    raise BadRequest(f"text message of {len(request.text)} characters exceeds {s.max_text_chars}")
                total += len(request.text)
                if total > s.max_stream_chars:
                    raise BadRequest(f"stream text exceeds {s.max_stream_chars} characters; open a new stream")
                yield request.text

        fmt = common_pb2.AudioFormat(sample_rate_hz=rate, encoding=common_pb2.LINEAR16, channels=1)
        mark = functools.partial(self._watermark.mark, strength=s.watermark_strength) if self._watermark else None
        synthesizer = StreamingSynthesizer(backend, rate, speaking_rate, self._turns, s.chunk_ms / 1000, mark)
        meta = first.meta
        started = time.perf_counter()
        async for item in synthesizer.run(items()):
            if isinstance(item, Chunk):
                yield tts_pb2.SynthesizeResponse(audio=_chunk_message(item, fmt), meta=meta)
            else:
                if item.total_s:
                    metrics.REAL_TIME_FACTOR.observe((time.perf_counter() - started) / item.total_s)
                yield tts_pb2.SynthesizeResponse(end=tts_pb2.EndOfStream(total_duration_s=item.total_s), meta=meta)


def _chunk_message(chunk: Chunk, fmt: common_pb2.AudioFormat) -> tts_pb2.AudioChunk:
    return tts_pb2.AudioChunk(
        pcm=audio.encode_linear16(chunk.audio),
        format=fmt,
        start_s=chunk.start_s,
        duration_s=chunk.audio.size / fmt.sample_rate_hz,
        text=chunk.text,
        phonemes=[
            tts_pb2.PhonemeTiming(phoneme=p.symbol, viseme=viseme_of(p.symbol), start_s=p.start_s, end_s=p.end_s)
            for p in chunk.phonemes
        ],
    )
