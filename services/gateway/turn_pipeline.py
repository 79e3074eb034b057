"""One reply, as a short chain of concurrent stages joined by bounded queues:

    LLM.Generate ──text deltas──▶ TTS.StreamingSynthesize ──PCM chunks──▶ SDA.StreamingAnimate ──frames──▶ client

The first clause is heard and seen while the LLM is still writing the rest. If the SDA stage fails, the reply
goes on as audio only (with a warning); if the LLM or TTS stage fails, the turn ends with a typed error. Errors
travel as events, never as exceptions out of this task; cancelling the task (barge-in) cancels every stream.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from avatar.common.v1 import common_pb2
from avatar.llm.v1 import llm_pb2
from avatar.sda.v1 import sda_pb2
from avatar.tts.v1 import tts_pb2
from opentelemetry import trace

from core.avatar_bundle import AVATAR_ID
from services.common.tracing import outgoing_metadata, start_child_span, start_turn_span
from services.gateway import media
from services.gateway.grpc_streams import bidi, responses
from services.gateway.protocol import ErrorCode, error_event
from services.gateway.speculation import SpeculativeReply
from services.gateway.stage_clients import StageClients

log = logging.getLogger(__name__)

OUTPUT_RATE = 16000  # reply audio: 16 kHz LINEAR16 mono, a whole number of samples per 25 fps frame
_BYTES_PER_S = OUTPUT_RATE * 2
_UNAVAILABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
_ROLES = {"user": llm_pb2.ROLE_USER, "assistant": llm_pb2.ROLE_ASSISTANT}


class StageFailed(Exception):
    def __init__(self, stage: str, err: grpc.aio.AioRpcError):
        super().__init__(f"{stage}: {err.details() or err.code().name}")
        self.stage = stage
        self.code = ErrorCode.STAGE_UNAVAILABLE if err.code() in _UNAVAILABLE else ErrorCode.STAGE_ERROR


def avatar_voice(avatars_dir: str, avatar_id: str) -> str:
    """The voice to ask TTS for: a published avatar's own (its bundle has voice/), else the default ("")."""
    if avatar_id in ("", "default") or not avatars_dir or not AVATAR_ID.fullmatch(avatar_id):
        return ""
    return avatar_id if (Path(avatars_dir) / avatar_id / "voice" / "model.pth").is_file() else ""


def generate_request(user_text: str, history: list[dict], avatar_id: str,
                     meta: common_pb2.RequestMeta) -> llm_pb2.GenerateRequest:
    return llm_pb2.GenerateRequest(
        avatar_id="" if avatar_id == "default" else avatar_id,
        history=[llm_pb2.ChatMessage(role=_ROLES[m["role"]], content=m["content"]) for m in history
                 if m["role"] in _ROLES],
        user_text=user_text,
        meta=meta,
    )


class TurnPipeline:
    def __init__(self, clients: StageClients, turn: int, request: llm_pb2.GenerateRequest, avatar_id: str,
                 emit: Callable[[dict], None], send_media: Callable[[bytes], None], ended_at: float,
                 speculation: SpeculativeReply | None = None, voice: str = ""):
        """`speculation`: a reply already under way, kept; otherwise the pipeline asks the LLM.
        `voice`: the TTS voice to speak with ("" = the service's default)."""
        self._clients = clients
        self._turn = turn
        self._request = request
        self._llm_responses = speculation.responses() if speculation is not None else None
        self._avatar_id = avatar_id
        self._voice = voice
        self._meta = request.meta
        self._emit = emit
        self._send = send_media
        self.reply = ""
        # The turn's span (opened by the speculation when one is kept, else when the user's turn ended); its
        # events, counted from the end of the user's turn, are the latency report the client gets.
        self._ended_ns = time.time_ns() - int((time.perf_counter() - ended_at) * 1e9)
        if speculation is not None:
            self._span = speculation.span
        else:
            self._span = start_turn_span(request.meta, speculated=False, start_time=self._ended_ns)
        self._span.set_attribute("avatar.avatar_id", avatar_id)
        self._span.add_event("end_of_turn", timestamp=self._ended_ns)

    def _mark(self, name: str) -> None:
        if all(event.name != name for event in self._span.events):
            self._span.add_event(name)

    @property
    def marks(self) -> dict[str, float]:
        """Milliseconds from the end of the user's turn to each first (a speculated reply may have its first
        tokens before the turn ended: those count as 0 ms)."""
        return {e.name: max(0.0, round((e.timestamp - self._ended_ns) / 1e6, 1))
                for e in self._span.events if e.name != "end_of_turn"}

    @contextlib.contextmanager
    def _stage(self, name: str):
        """A child span of the turn for one stage call; its context goes to the service in the metadata."""
        if name == "llm" and self._llm_responses is not None:
            yield ()  # the kept speculation's own `llm` span covers the call
            return
        span = start_child_span(self._span, name)
        try:
            yield outgoing_metadata(span)
        except StageFailed as err:
            span.set_status(trace.StatusCode.ERROR, str(err))
            raise
        finally:
            span.end()

    async def run(self) -> None:
        text_q: asyncio.Queue[str | None] = asyncio.Queue(maxsize=256)
        audio_q: asyncio.Queue[tts_pb2.AudioChunk | None] = asyncio.Queue(maxsize=256)
        stages = [asyncio.create_task(self._llm(text_q)), asyncio.create_task(self._tts(text_q, audio_q)),
                  asyncio.create_task(self._sda(audio_q))]
        try:
            await asyncio.gather(*stages)
        except StageFailed as err:
            self._span.set_status(trace.StatusCode.ERROR, str(err))
            self._emit(error_event(err.code, str(err)))
        except asyncio.CancelledError:
            self._span.add_event("cancelled")  # barge-in
            raise
        finally:
            for task in stages:
                task.cancel()
            await asyncio.gather(*stages, return_exceptions=True)
            self._span.end()
        self._emit({"type": "turn_end", "turn": self._turn, "reply": self.reply, "latency_ms": self.marks,
                    "speculated": self._llm_responses is not None})

    async def _llm(self, text_q: asyncio.Queue) -> None:
        try:
            with self._stage("llm") as metadata:
                stream = self._llm_responses or responses(
                    self._clients.llm.Generate(self._request, metadata=metadata), "Generate")
                try:
                    async for response in stream:
                        if response.delta:
                            self._mark("llm_first_token")
                            self.reply += response.delta
                            self._emit({"type": "reply_delta", "turn": self._turn, "text": response.delta})
                            await text_q.put(response.delta)
                except grpc.aio.AioRpcError as err:
                    raise StageFailed("text engine", err) from None
        finally:
            text_q.put_nowait(None)

    async def _tts(self, text_q: asyncio.Queue, audio_q: asyncio.Queue) -> None:
        async def requests():
            config = tts_pb2.SynthesisConfig(voice=self._voice, sample_rate_hz=OUTPUT_RATE)
            yield tts_pb2.SynthesizeRequest(config=config, meta=self._meta)
            while (delta := await text_q.get()) is not None:
                yield tts_pb2.SynthesizeRequest(text=delta, meta=self._meta)

        try:
            with self._stage("tts") as metadata:
                try:
                    async for response in bidi(self._clients.tts.StreamingSynthesize, requests(), metadata=metadata):
                        if response.WhichOneof("result") == "audio":
                            self._mark("tts_first_audio")
                            await audio_q.put(response.audio)
                except grpc.aio.AioRpcError as err:
                    raise StageFailed("speech synthesis", err) from None
        finally:
            audio_q.put_nowait(None)

    async def _sda(self, audio_q: asyncio.Queue) -> None:
        """Frames with their audio; on an SDA failure, the audio not yet shown goes out alone."""
        forwarded = bytearray()  # every byte of reply audio handed to SDA
        shown = 0  # bytes of it that came back inside frames
        done = asyncio.Event()

        async def requests():
            fmt = common_pb2.AudioFormat(sample_rate_hz=OUTPUT_RATE, encoding=common_pb2.LINEAR16, channels=1)
            avatar = "" if self._avatar_id == "default" else self._avatar_id
            yield sda_pb2.AnimateRequest(
                config=sda_pb2.AnimateConfig(avatar_id=avatar, audio_format=fmt, image_encoding=sda_pb2.JPEG),
                meta=self._meta)
            while (chunk := await audio_q.get()) is not None:
                forwarded.extend(chunk.pcm)
                yield sda_pb2.AnimateRequest(audio=chunk.pcm, meta=self._meta)
            yield sda_pb2.AnimateRequest(end_of_segment=sda_pb2.EndOfSegment(), meta=self._meta)
            await done.wait()  # keep the request side open until the segment's last frame is back

        try:
            with self._stage("sda") as metadata:
                async for response in bidi(self._clients.sda.StreamingAnimate, requests(), metadata=metadata):
                    kind = response.WhichOneof("result")
                    if kind == "frame":
                        self._mark("first_frame")
                        frame = response.frame
                        shown += len(frame.audio)
                        self._send(media.video_message(self._turn, frame.pts_s, frame.audio, frame.image))
                    elif kind == "segment_end":
                        done.set()
                        return
        except grpc.aio.AioRpcError as err:
            self._emit({"type": "warning", "code": "video_unavailable",
                        "message": f"animation stopped ({err.details() or err.code().name}); continuing with audio only"})
        await self._audio_only(audio_q, forwarded, shown)

    async def _audio_only(self, audio_q: asyncio.Queue, forwarded: bytearray, shown: int) -> None:
        position = shown
        if len(forwarded) > shown:
            self._mark("first_audio_only")
            self._send(media.audio_message(self._turn, shown / _BYTES_PER_S, bytes(forwarded[shown:])))
            position = len(forwarded)
        while (chunk := await audio_q.get()) is not None:
            self._mark("first_audio_only")
            self._send(media.audio_message(self._turn, position / _BYTES_PER_S, chunk.pcm))
            position += len(chunk.pcm)
