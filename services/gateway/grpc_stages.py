"""The stage interfaces (`stages.py`) over the stages' gRPC streams: the proto messages stay in this file."""

import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from avatar.asr.v1 import asr_pb2
from avatar.common.v1 import common_pb2
from avatar.llm.v1 import llm_pb2
from avatar.sda.v1 import sda_pb2
from avatar.tts.v1 import tts_pb2
from core.avatar_bundle import wire_id
from core.tts.visemes import LIPS_CLOSED
from services.gateway.config import GatewaySettings
from services.gateway.grpc_streams import bidi, responses
from services.gateway.protocol import ErrorCode
from services.gateway.stage_channels import StageClients
from services.gateway.stages import (
    OUTPUT_RATE, Avatars, Face, Finish, Frame, ListenConfig, Metadata, ModelInfo, ReplyRequest, SpeechChunk, SpeechEvent,
    Stages, StageFailed, Transcript, TurnMeta, Usage, VideoOut, Voice, Voices, Word,
)

_KINDS = {grpc.StatusCode.UNAVAILABLE: "unavailable", grpc.StatusCode.RESOURCE_EXHAUSTED: "busy",
          grpc.StatusCode.DEADLINE_EXCEEDED: "timeout", grpc.StatusCode.INVALID_ARGUMENT: "invalid_argument",
          grpc.StatusCode.NOT_FOUND: "not_found"}
_UNAVAILABLE = {"unavailable", "busy", "timeout"}
_ENCODINGS = {"linear16": common_pb2.LINEAR16, "float32": common_pb2.FLOAT32}
_SPEECH_EVENTS = {asr_pb2.SpeechEvent.SPEECH_START: "speech_start", asr_pb2.SpeechEvent.SPEECH_RESUMED: "speech_resumed",
                  asr_pb2.SpeechEvent.END_OF_TURN: "end_of_turn"}
_END_OF_TURN = {"semantic": asr_pb2.RecognitionConfig.END_OF_TURN_SEMANTIC,
                "silence": asr_pb2.RecognitionConfig.END_OF_TURN_SILENCE}
_ROLES = {"user": llm_pb2.ROLE_USER, "assistant": llm_pb2.ROLE_ASSISTANT}
_IMAGE_ENCODINGS = {"jpeg": sda_pb2.JPEG, "h264": sda_pb2.H264, "vp8": sda_pb2.VP8}


_CUT_BY_TRANSPORT = ("Internal error from Core", "RST_STREAM")  # INTERNAL, as gRPC core reports a stream cut with its
# connection (a connection ageing out while a stream is open): the stage is not broken, the stream may be re-opened


def stage_failed(stage: str, err: grpc.aio.AioRpcError) -> StageFailed:
    kind = _KINDS.get(err.code(), "failed")
    if err.code() == grpc.StatusCode.INTERNAL and any(cut in (err.details() or "") for cut in _CUT_BY_TRANSPORT):
        kind = "unavailable"
    code = ErrorCode.STAGE_UNAVAILABLE if kind in _UNAVAILABLE else ErrorCode.STAGE_ERROR
    return StageFailed(stage, err.details() or err.code().name, code, kind)


def _meta(meta: TurnMeta) -> common_pb2.RequestMeta:
    return common_pb2.RequestMeta(session_id=meta.session_id, turn_id=meta.turn_id)


class GrpcRecognizer:
    def __init__(self, clients: StageClients):
        self._clients = clients

    async def listen(self, config: ListenConfig, audio: AsyncIterator[bytes],
                     session_id: str) -> AsyncIterator[SpeechEvent | Transcript]:
        meta = common_pb2.RequestMeta(session_id=session_id)

        async def requests():
            yield asr_pb2.StreamingRecognizeRequest(
                config=asr_pb2.RecognitionConfig(
                    format=common_pb2.AudioFormat(sample_rate_hz=config.sample_rate,
                                                  encoding=_ENCODINGS[config.encoding], channels=1),
                    partial_results=config.partial_results,
                    end_of_turn_silence_ms=config.end_of_turn_silence_ms,
                    end_of_turn=_END_OF_TURN[config.end_of_turn],
                    max_end_of_turn_silence_ms=config.max_end_of_turn_silence_ms,
                    language=config.language,
                    model=config.model,
                    vocabulary=config.vocabulary,
                ),
                meta=meta,
            )
            async for frame in audio:
                yield asr_pb2.StreamingRecognizeRequest(audio=frame, meta=meta)

        # No wait: the listener re-opens a cut stream itself and tells the user at once when it cannot.
        await self._clients.connected("asr", wait_s=0)
        try:
            async for response in bidi(self._clients.asr.StreamingRecognize, requests()):
                if response.WhichOneof("result") == "event":
                    yield SpeechEvent(_SPEECH_EVENTS[response.event.type], response.event.audio_offset_s,
                                      response.event.end_of_turn_reason)
                    continue
                hyp = response.hypothesis
                yield Transcript(
                    hyp.transcript, hyp.is_final, hyp.stability, hyp.speech_paused,
                    tuple(Word(w.word, w.start_s, w.end_s, w.confidence) for w in hyp.words), hyp.committed_words)
        except grpc.aio.AioRpcError as err:
            raise stage_failed("speech recognition", err) from None


class GrpcTextEngine:
    _MODEL_KEPT_S = 60.0  # the model a text engine serves is asked again after this long (a redeploy may change it)

    def __init__(self, clients: StageClients, timeout_s: float):
        self._clients = clients
        self._timeout_s = timeout_s
        self._model: tuple[float, ModelInfo] | None = None

    async def model(self) -> ModelInfo | None:
        now = time.monotonic()
        if self._model is None or now - self._model[0] > self._MODEL_KEPT_S:
            try:
                reply = await self._clients.llm.ListModels(llm_pb2.ListModelsRequest(), timeout=1.0)
            except grpc.aio.AioRpcError:
                return self._model[1] if self._model else None
            info = next((m for m in reply.models if m.name == reply.default_model), None)
            if info is None:
                return None
            self._model = (now, ModelInfo(info.name, info.backend, info.context_tokens))
        return self._model[1]

    async def generate(self, request: ReplyRequest, metadata: Metadata = ()) -> AsyncIterator[str | Finish]:
        choice = request.generation
        params = llm_pb2.GenerationParams(max_tokens=choice.max_tokens, top_p=choice.top_p, stop=choice.stop,
                                          seed=choice.seed)
        if choice.temperature is not None:
            params.temperature = choice.temperature
        message = llm_pb2.GenerateRequest(
            avatar_id=wire_id(request.avatar_id),
            persona=llm_pb2.Persona(system_prompt=choice.system_prompt),
            history=[llm_pb2.ChatMessage(role=_ROLES[m["role"]], content=m["content"]) for m in request.history],
            user_text=request.user_text,
            params=params,
            model=choice.model,
            meta=_meta(request.meta),
        )
        await self._clients.connected("llm")
        try:
            call = self._clients.llm.Generate(message, metadata=metadata, timeout=self._timeout_s)
            async for response in responses(call, "Generate"):
                if response.delta:
                    yield response.delta
                if response.finish_reason:
                    usage = response.usage
                    yield Finish("length" if response.finish_reason == llm_pb2.LENGTH else "stop",
                                 Usage(usage.prompt_tokens, usage.completion_tokens, usage.cached_prompt_tokens))
        except grpc.aio.AioRpcError as err:
            raise stage_failed("text engine", err) from None


class GrpcSynthesizer:
    def __init__(self, clients: StageClients, timeout_s: float):
        self._clients = clients
        self._timeout_s = timeout_s

    async def voices(self) -> Voices:
        try:
            reply = await self._clients.tts.ListVoices(tts_pb2.ListVoicesRequest(), timeout=5)
        except grpc.aio.AioRpcError as err:
            raise stage_failed("speech synthesis", err) from None
        return Voices(reply.default_voice, [v.name for v in reply.voices])

    async def synthesize(self, text: AsyncIterator[str], voice: Voice, meta: TurnMeta,
                         metadata: Metadata = ()) -> AsyncIterator[SpeechChunk]:
        request_meta = _meta(meta)

        async def requests():
            config = tts_pb2.SynthesisConfig(voice=voice.name, speaking_rate=voice.speed,
                                             sample_rate_hz=voice.sample_rate)
            yield tts_pb2.SynthesizeRequest(config=config, meta=request_meta)
            async for delta in text:
                yield tts_pb2.SynthesizeRequest(text=delta, meta=request_meta)

        await self._clients.connected("tts")
        try:
            async for response in bidi(self._clients.tts.StreamingSynthesize, requests(), metadata=metadata,
                                       timeout=self._timeout_s):
                if response.WhichOneof("result") == "audio":
                    audio = response.audio
                    yield SpeechChunk(audio.pcm, audio.text, audio.format.sample_rate_hz or voice.sample_rate,
                                      tuple((p.start_s - audio.start_s, p.end_s - audio.start_s)
                                            for p in audio.phonemes if p.viseme == LIPS_CLOSED))
        except grpc.aio.AioRpcError as err:
            raise stage_failed("speech synthesis", err) from None


class GrpcAnimator:
    def __init__(self, clients: StageClients, timeout_s: float):
        self._clients = clients
        self._timeout_s = timeout_s

    async def avatars(self) -> Avatars:
        try:
            reply = await self._clients.sda.ListAvatars(sda_pb2.ListAvatarsRequest(), timeout=5)
        except grpc.aio.AioRpcError as err:
            raise stage_failed("animation", err) from None
        return Avatars(reply.default_avatar, [a.avatar_id for a in reply.avatars])

    async def animate(self, speech: AsyncIterator[SpeechChunk], face: Face, meta: TurnMeta, video: VideoOut,
                      metadata: Metadata = (), sample_rate: int = OUTPUT_RATE) -> AsyncIterator[Frame]:
        request_meta = _meta(meta)
        outgoing: asyncio.Queue[sda_pb2.AnimateRequest | None] = asyncio.Queue()

        async def audio_in() -> None:
            position_s = 0.0  # of the chunk about to go, in the segment's audio
            async for chunk in speech:
                if chunk.lips_closed:
                    spans = [sda_pb2.TimeSpan(start_s=position_s + start, end_s=position_s + end)
                             for start, end in chunk.lips_closed]
                    outgoing.put_nowait(sda_pb2.AnimateRequest(lips_closed=sda_pb2.LipsClosed(spans=spans),
                                                               meta=request_meta))
                outgoing.put_nowait(sda_pb2.AnimateRequest(audio=chunk.pcm, meta=request_meta))
                position_s += len(chunk.pcm) / (2 * sample_rate)
            outgoing.put_nowait(sda_pb2.AnimateRequest(end_of_segment=sda_pb2.EndOfSegment(), meta=request_meta))

        async def keyframes_in() -> None:
            while True:
                await video.keyframe_wanted.wait()
                video.keyframe_wanted.clear()
                outgoing.put_nowait(sda_pb2.AnimateRequest(keyframe=sda_pb2.KeyframeRequest(), meta=request_meta))

        async def pictures_in() -> None:
            while True:
                await video.picture_rate_changed.wait()
                video.picture_rate_changed.clear()
                outgoing.put_nowait(sda_pb2.AnimateRequest(picture_rate=sda_pb2.PictureRate(every=video.picture_every),
                                                           meta=request_meta))

        async def requests():
            yield sda_pb2.AnimateRequest(
                config=sda_pb2.AnimateConfig(
                    avatar_id=wire_id(face.avatar_id), face_image=face.photo, image_encoding=_IMAGE_ENCODINGS[video.codec],
                    jpeg_quality=video.jpeg_quality,
                    audio_format=common_pb2.AudioFormat(sample_rate_hz=sample_rate, encoding=common_pb2.LINEAR16,
                                                        channels=1)),
                meta=request_meta)
            video.keyframe_wanted.clear()  # a stream's first frame is a keyframe anyway
            if video.picture_every != 1:
                video.picture_rate_changed.set()
            feeders = [asyncio.create_task(audio_in()), asyncio.create_task(keyframes_in()),
                       asyncio.create_task(pictures_in())]
            try:
                # The request side stays open until the segment's last frame is back (None), keyframe requests
                # included.
                while (request := await outgoing.get()) is not None:
                    yield request
            finally:
                for feeder in feeders:
                    feeder.cancel()

        await self._clients.connected("sda")
        try:
            async for response in bidi(self._clients.sda.StreamingAnimate, requests(), metadata=metadata,
                                       timeout=self._timeout_s):
                kind = response.WhichOneof("result")
                if kind == "frame":
                    frame = response.frame
                    yield Frame(frame.pts_s, frame.audio, frame.image, frame.keyframe)
                elif kind == "segment_end":
                    outgoing.put_nowait(None)
                    return
        except grpc.aio.AioRpcError as err:
            raise stage_failed("animation", err) from None


def grpc_stages(clients: StageClients, settings: GatewaySettings) -> Stages:
    return Stages(GrpcRecognizer(clients), GrpcTextEngine(clients, settings.llm_timeout_s),
                  GrpcSynthesizer(clients, settings.tts_timeout_s), GrpcAnimator(clients, settings.sda_timeout_s))
