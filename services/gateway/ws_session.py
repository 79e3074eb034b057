"""One browser WebSocket session: hello, then microphone audio in, speech events and transcripts out.

Errors travel as values (typed `error` events), never as exceptions out of a background task: a bad frame is
answered and dropped, a failed stage ends its stream with an event and the session goes on.
"""

import asyncio
import json
import logging
import secrets
import time
import uuid

import grpc
from avatar.asr.v1 import asr_pb2
from avatar.common.v1 import common_pb2
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from services.gateway.config import GatewaySettings
from services.gateway.grpc_streams import bidi
from services.gateway.protocol import (
    PROTOCOL_VERSION,
    EndOfAudio,
    ErrorCode,
    Hello,
    error_event,
)
from services.gateway.session_store import SessionStore
from services.gateway.speculation import SpeculativeReply
from services.gateway.spoken_words import interrupts
from services.gateway.stage_clients import StageClients
from services.gateway.turn_pipeline import (
    OUTPUT_RATE,
    StageFailed,
    TurnPipeline,
    avatar_voice,
    generate_request,
)

log = logging.getLogger(__name__)

_ENCODINGS = {"linear16": (common_pb2.LINEAR16, 2), "float32": (common_pb2.FLOAT32, 4)}


class WsSession:
    def __init__(self, ws: WebSocket, store: SessionStore, clients: StageClients, settings: GatewaySettings):
        self._ws = ws
        self._store = store
        self._clients = clients
        self._settings = settings
        self._outbox: asyncio.Queue[dict | bytes | None] = asyncio.Queue()
        self._hello: Hello | None = None
        self._session_id = ""
        self._audio_queue: asyncio.Queue[bytes | None] | None = None
        self._asr_task: asyncio.Task | None = None
        self._reply: asyncio.Task | None = None  # the running turn pipeline
        self._reply_turn = -1
        self._turn_ended_at: dict[int, float] = {}
        self._turns = 0  # turns of this connection: the index the client sees
        self._speculation: SpeculativeReply | None = None

    async def run(self) -> None:
        await self._ws.accept()
        sender = asyncio.create_task(self._send_loop())
        try:
            await self._receive_loop()
        except WebSocketDisconnect:
            pass
        finally:
            if self._audio_queue is not None:
                self._audio_queue.put_nowait(None)
            if self._asr_task is not None:
                self._asr_task.cancel()
            if self._reply is not None:
                self._reply.cancel()
            self._drop_speculation()
            self._outbox.put_nowait(None)
            await asyncio.gather(sender, return_exceptions=True)

    def _emit(self, event: dict | bytes) -> None:
        self._outbox.put_nowait(event)

    async def _send_loop(self) -> None:
        while (event := await self._outbox.get()) is not None:
            if isinstance(event, bytes):
                await self._ws.send_bytes(event)
                continue
            await self._ws.send_text(json.dumps(event))
            if event.get("fatal"):
                await self._ws.close(code=1008)
                return

    async def _receive_loop(self) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                self._on_audio(message["bytes"])
            elif message.get("text") is not None:
                if await self._on_text(message["text"]):
                    return

    async def _on_text(self, text: str) -> bool:
        """Handle a JSON message; True when the session must end."""
        try:
            data = json.loads(text)
            kind = data.get("type") if isinstance(data, dict) else None
        except json.JSONDecodeError as err:
            self._emit(error_event(ErrorCode.BAD_MESSAGE, f"not JSON: {err}"))
            return False
        if kind == "hello":
            return await self._on_hello(data)
        if self._hello is None:
            self._emit(error_event(ErrorCode.NOT_READY, f"send a hello before `{kind}`"))
            return False
        if kind == "end_of_audio":
            EndOfAudio.model_validate(data)
            if self._audio_queue is not None:
                self._audio_queue.put_nowait(None)
                self._audio_queue = None
            return False
        self._emit(error_event(ErrorCode.BAD_MESSAGE, f"unknown message type {kind!r}"))
        return False

    async def _on_hello(self, data: dict) -> bool:
        if self._hello is not None:
            self._emit(error_event(ErrorCode.BAD_MESSAGE, "hello was already sent"))
            return False
        try:
            hello = Hello.model_validate(data)
        except ValidationError as err:
            self._emit(error_event(ErrorCode.BAD_MESSAGE, f"bad hello: {err.errors()[0]['msg']} at {err.errors()[0]['loc']}"))
            return False
        if hello.version != PROTOCOL_VERSION:
            self._emit(error_event(ErrorCode.UNSUPPORTED_VERSION, f"protocol version {PROTOCOL_VERSION} only", fatal=True))
            return True
        if self._settings.auth_token and not secrets.compare_digest(hello.token, self._settings.auth_token):
            self._emit(error_event(ErrorCode.UNAUTHORIZED, "missing or wrong token", fatal=True))
            return True
        if hello.session_id:
            stored = await self._store.get(hello.session_id)
            if stored is None:
                self._emit(error_event(ErrorCode.UNKNOWN_SESSION, "no such session (expired?); start a new one"))
                return False
            self._session_id = hello.session_id
        else:
            self._session_id = await self._store.create(hello.avatar_id, hello.settings.model_dump())
        self._hello = hello
        self._emit(
            {
                "type": "ready",
                "protocol": PROTOCOL_VERSION,
                "session_id": self._session_id,
                "stages": await self._clients.statuses(),
                "output_audio": {"sample_rate": OUTPUT_RATE, "encoding": "linear16"},
            }
        )
        return False

    def _on_audio(self, frame: bytes) -> None:
        if self._hello is None:
            self._emit(error_event(ErrorCode.NOT_READY, "send a hello before audio"))
            return
        width = _ENCODINGS[self._hello.audio.encoding][1]
        if len(frame) > self._settings.max_audio_frame_bytes:
            self._emit(error_event(ErrorCode.AUDIO_TOO_LARGE, f"audio frame of {len(frame)} bytes exceeds {self._settings.max_audio_frame_bytes}"))
            return
        if len(frame) % width:
            self._emit(error_event(ErrorCode.BAD_MESSAGE, f"audio frame of {len(frame)} bytes is not whole {width}-byte samples"))
            return
        if self._audio_queue is None:
            self._audio_queue = asyncio.Queue()
            self._asr_task = asyncio.create_task(self._recognize(self._audio_queue))
        self._audio_queue.put_nowait(frame)

    async def _recognize(self, audio: asyncio.Queue) -> None:
        hello = self._hello
        encoding = _ENCODINGS[hello.audio.encoding][0]
        meta = common_pb2.RequestMeta(session_id=self._session_id, request_id=uuid.uuid4().hex)

        async def requests():
            yield asr_pb2.StreamingRecognizeRequest(
                config=asr_pb2.RecognitionConfig(
                    format=common_pb2.AudioFormat(sample_rate_hz=hello.audio.sample_rate, encoding=encoding, channels=1),
                    partial_results=hello.settings.partial_transcripts,
                    end_of_turn_silence_ms=hello.settings.end_of_turn_silence_ms,
                ),
                meta=meta,
            )
            while (frame := await audio.get()) is not None:
                yield asr_pb2.StreamingRecognizeRequest(audio=frame, meta=meta)

        try:
            async for response in bidi(self._clients.asr.StreamingRecognize, requests()):
                await self._on_asr(response)
        except grpc.aio.AioRpcError as err:
            failure = StageFailed("speech recognition", err)
            self._emit(error_event(failure.code, str(failure)))
        finally:
            if self._audio_queue is audio:
                self._audio_queue = None

    async def _on_asr(self, response: asr_pb2.StreamingRecognizeResponse) -> None:
        if response.WhichOneof("result") == "event":
            event = response.event
            if event.type == asr_pb2.SpeechEvent.SPEECH_START:
                if self._hello.settings.barge_in_min_words == 0:
                    self._barge_in()
                self._emit({"type": "speech_start", "turn": self._turns, "t": round(event.audio_offset_s, 3)})
            else:
                self._turn_ended_at[self._turns] = time.perf_counter()
                self._emit({"type": "end_of_turn", "turn": self._turns, "t": round(event.audio_offset_s, 3)})
            return
        hyp = response.hypothesis
        turn = self._turns
        self._emit(
            {
                "type": "transcript",
                "turn": turn,
                "text": hyp.transcript,
                "final": hyp.is_final,
                "stability": round(hyp.stability, 3),
                "words": [
                    {"w": w.word, "start": round(w.start_s, 3), "end": round(w.end_s, 3), "p": round(w.confidence, 3)}
                    for w in hyp.words
                ],
            }
        )
        if interrupts(hyp.transcript, self._hello.settings.barge_in_min_words):
            self._barge_in()  # words, not a cough or a "mm-hmm": the user is speaking over the reply
        if not hyp.is_final:
            await self._speculate(hyp)
            return
        self._turns += 1
        if hyp.transcript and not self._replying():
            history = await self._store.history(self._session_id)
            await self._store.append_history(self._session_id, "user", hyp.transcript)
            self._start_reply(turn, hyp.transcript, history)
        else:
            self._drop_speculation()  # nothing said, or a backchannel heard over the reply: no new turn to answer

    def _replying(self) -> bool:
        """A reply is being made and nothing has asked it to stop."""
        return self._reply is not None and not self._reply.done() and not self._reply.cancelling()

    def _meta(self, turn: int) -> common_pb2.RequestMeta:
        return common_pb2.RequestMeta(session_id=self._session_id, turn_id=f"{self._session_id}:{turn}",
                                      request_id=uuid.uuid4().hex)

    async def _speculate(self, hyp: asr_pb2.Hypothesis) -> None:
        """On the partial decoded at a pause, start the answer before the end of turn is declared."""
        if self._speculation is not None and not self._speculation.matches(hyp.transcript):
            self._drop_speculation()  # the user went on speaking, or said something else
        if not (self._settings.speculation and hyp.speech_paused and hyp.transcript) or self._speculation:
            return
        if self._replying():
            return  # speech over a reply that did not interrupt it: not a question to answer
        history = await self._store.history(self._session_id)
        request = generate_request(hyp.transcript, history, self._hello.avatar_id, self._meta(self._turns))
        self._speculation = SpeculativeReply(self._clients, request)

    def _drop_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation.cancel()
            self._speculation = None

    def _barge_in(self) -> None:
        """The user speaks over the reply: stop every stage of it and tell the client to drop what it queued."""
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()
            self._emit({"type": "interrupted", "turn": self._reply_turn})

    def _start_reply(self, turn: int, text: str, history: list[dict]) -> None:
        self._barge_in()
        ended_at = self._turn_ended_at.pop(turn, time.perf_counter())
        speculation, self._speculation = self._speculation, None
        if speculation is not None and not speculation.matches(text):
            speculation.cancel()
            speculation = None
        request = generate_request(text, history, self._hello.avatar_id, self._meta(turn))
        pipeline = TurnPipeline(self._clients, turn, request, self._hello.avatar_id, self._emit, self._emit,
                                ended_at, speculation, voice=avatar_voice(self._settings.avatars_dir, self._hello.avatar_id))
        self._reply_turn = turn

        async def reply() -> None:
            await pipeline.run()
            if pipeline.reply:
                await self._store.append_history(self._session_id, "assistant", pipeline.reply)

        self._reply = asyncio.create_task(reply())
