"""The ASR gRPC servicer: validates the stream, runs a StreamingRecognizer, maps its events to messages."""

import asyncio
import logging
import time

import grpc
from avatar.asr.v1 import asr_pb2, asr_pb2_grpc
from avatar.common.v1 import common_pb2

from core import audio
from core.asr import vocabulary
from core.asr.backends.base_backend import AsrBackend
from core.asr.backends.whisper_ct2 import WhisperCt2Backend
from core.asr.turn_end import TurnTextModel
from core.asr.vad import SileroVad
from core.errors import BadRequest, NotFound
from services.asr.config import AsrSettings
from services.asr.engine import (
    SAMPLE_RATE,
    RecognizerConfig,
    SpeechStarted,
    StreamingRecognizer,
    Transcript,
    TurnEnded,
)
from services.common import end_of_turn, metrics
from services.common.streams import check_chunk_size, read_config

log = logging.getLogger(__name__)


_END_OF_TURN = {asr_pb2.RecognitionConfig.END_OF_TURN_SEMANTIC: "semantic",
                asr_pb2.RecognitionConfig.END_OF_TURN_SILENCE: "silence"}


def make_backend(settings: AsrSettings) -> AsrBackend:
    if settings.backend == "nemo":
        from core.asr.backends.nemo_ctc import (
            NemoBackend,  # NeMo is heavy: imported only when chosen
        )

        return NemoBackend(settings.model_path, settings.device)
    return WhisperCt2Backend(settings.model_path, settings.device, settings.threads, settings.beam_size,
                             settings.final_beam_size)


class AsrService(asr_pb2_grpc.AsrServiceServicer):
    service_name = asr_pb2.DESCRIPTOR.services_by_name["AsrService"].full_name

    def __init__(self, settings: AsrSettings):
        self._settings = settings
        self._backend = make_backend(settings)
        self._vad_session = None
        self._turn_end: TurnTextModel | None = None
        self._decode_lock: asyncio.Lock | None = None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        asr_pb2_grpc.add_AsrServiceServicer_to_server(self, server)

    def load(self) -> None:
        self._vad_session = SileroVad.load_session()
        self._backend.load()
        if self._settings.end_of_turn_model:
            self._turn_end = TurnTextModel(threads=self._settings.end_of_turn_model_threads)
            self._turn_end.complete_probability("What is your name")
            log.info("end-of-turn model %s: %.0f ms a judgement", self._turn_end.path.name, self._turn_end.last_ms)

    def _recognizer_config(self, config: asr_pb2.RecognitionConfig) -> RecognizerConfig:
        s = self._settings
        if config.model not in ("", "default", self._backend.name):
            raise NotFound(f"unknown model {config.model!r}; available: default ({self._backend.name})")
        silence_ms = config.end_of_turn_silence_ms or s.end_of_turn_silence_ms
        if not end_of_turn.SHORTEST_MS <= silence_ms <= end_of_turn.LONGEST_MS:
            raise BadRequest(f"end_of_turn_silence_ms must be {end_of_turn.SHORTEST_MS}-{end_of_turn.LONGEST_MS}, "
                             f"got {silence_ms}")
        max_silence_ms = config.max_end_of_turn_silence_ms or s.max_end_of_turn_silence_ms
        if not s.judge_after_ms <= max_silence_ms <= end_of_turn.LONGEST_MS:
            raise BadRequest(f"max_end_of_turn_silence_ms must be {s.judge_after_ms}-{end_of_turn.LONGEST_MS}, "
                             f"got {max_silence_ms}")
        terms, longest = len(config.vocabulary), max(map(len, config.vocabulary), default=0)
        if terms > vocabulary.MAX_TERMS or longest > vocabulary.MAX_TERM_CHARS:
            raise BadRequest(f"vocabulary may hold at most {vocabulary.MAX_TERMS} terms of at most "
                             f"{vocabulary.MAX_TERM_CHARS} characters, got {terms} (longest {longest})")
        mode = _END_OF_TURN.get(config.end_of_turn, s.end_of_turn)
        language = config.language or s.language
        return RecognizerConfig(
            end_of_turn_s=silence_ms / 1000,
            end_of_turn=mode,
            judge_after_s=s.judge_after_ms / 1000,
            complete_above=s.end_of_turn_complete_above,
            complete_end_s=s.complete_end_ms / 1000,
            asked_above=s.end_of_turn_asked_above,
            asked_end_s=s.asked_end_ms / 1000,
            second_reading_end_s=s.second_reading_end_ms / 1000,
            sure_above=s.end_of_turn_sure_above,
            max_end_of_turn_s=max_silence_ms / 1000,
            partials=config.partial_results,
            language=None if language == "auto" else language.split("-")[0].lower(),
            partial_interval_s=s.partial_interval_ms / 1000,
            final_late_s=s.final_late_ms / 1000,
            vocabulary=tuple(vocabulary.merged(list(config.vocabulary))),
        )

    async def StreamingRecognize(self, request_iterator, context):
        first = await read_config(request_iterator)
        config = first.config
        fmt = config.format
        audio.check_format(fmt.encoding, fmt.sample_rate_hz, fmt.channels)
        recognizer_config = self._recognizer_config(config)
        meta = first.meta
        limit = self._settings.max_chunk_bytes
        if self._decode_lock is None:
            self._decode_lock = asyncio.Lock()
        received = {"seconds": 0.0}

        async def chunks():
            async for request in request_iterator:
                kind = request.WhichOneof("request")
                if kind != "audio":
                    raise BadRequest(f"after the config only `audio` messages are allowed, got `{kind}`")
                check_chunk_size(request.audio, limit)
                samples = audio.decode(request.audio, fmt.encoding)
                received["seconds"] += samples.size / fmt.sample_rate_hz
                yield audio.resample(samples, fmt.sample_rate_hz, SAMPLE_RATE)

        recognizer = StreamingRecognizer(
            self._backend, SileroVad(self._vad_session), recognizer_config, self._decode_lock, self._turn_end
        )
        started = time.perf_counter()
        async for event in recognizer.run(chunks()):
            yield _to_response(event, meta)
        if received["seconds"]:
            metrics.REAL_TIME_FACTOR.observe((time.perf_counter() - started) / received["seconds"])


def _to_response(event, meta: common_pb2.RequestMeta) -> asr_pb2.StreamingRecognizeResponse:
    if isinstance(event, SpeechStarted):
        return asr_pb2.StreamingRecognizeResponse(
            event=asr_pb2.SpeechEvent(
                type=asr_pb2.SpeechEvent.SPEECH_RESUMED if event.resumed else asr_pb2.SpeechEvent.SPEECH_START,
                audio_offset_s=event.offset_s, turn_index=event.turn_index,
            ),
            meta=meta,
        )
    if isinstance(event, TurnEnded):
        metrics.END_OF_TURN.labels(event.reason).inc()
        return asr_pb2.StreamingRecognizeResponse(
            event=asr_pb2.SpeechEvent(
                type=asr_pb2.SpeechEvent.END_OF_TURN, audio_offset_s=event.offset_s, turn_index=event.turn_index,
                end_of_turn_reason=event.reason, complete_probability=event.complete_probability,
            ),
            meta=meta,
        )
    assert isinstance(event, Transcript)
    words = [
        asr_pb2.WordInfo(word=w.text, start_s=w.start_s, end_s=w.end_s, confidence=w.confidence)
        for w in event.words
    ]
    return asr_pb2.StreamingRecognizeResponse(
        hypothesis=asr_pb2.Hypothesis(
            transcript=event.text,
            is_final=event.is_final,
            stability=1.0 if event.is_final else event.committed / max(len(event.words), 1),
            words=words,
            audio_processed_s=event.audio_processed_s,
            turn_index=event.turn_index,
            committed_words=event.committed,
            speech_paused=event.speech_paused,
        ),
        meta=meta,
    )
