"""The browser's WebSocket: messages in (JSON control messages, binary audio), events and media out.

It checks every message against the protocol (docs/websocket.md) and hands what is valid to the conversation;
a bad message is answered with an `error` event and dropped, and the session goes on. Media travel as binary
messages (`media.py`); everything goes out through one queue, in order.
"""

import asyncio
import json
import secrets

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from services.gateway.admission import BUSY_CLOSE_CODE, Admission
from services.gateway.config import GatewaySettings
from services.gateway.conversation import Conversation
from services.gateway.draining import RESTART_CLOSE_CODE, Drain, reconnect_event
from services.gateway.protocol import PROTOCOL_VERSION, EndOfAudio, ErrorCode, Hello, KeyframeRequest, error_event
from services.gateway.session_store import SessionStore
from services.gateway.stage_clients import StageClients
from services.gateway.stages import Stages

_SAMPLE_WIDTH = {"linear16": 2, "float32": 4}


class WebSocketTransport:
    def __init__(self, ws: WebSocket, stages: Stages, clients: StageClients, store: SessionStore,
                 settings: GatewaySettings, drain: Drain, admission: Admission):
        self._ws = ws
        self._drain = drain
        self._admission = admission
        self._admitted = False
        self._settings = settings
        self._outbox: asyncio.Queue[dict | bytes | None] = asyncio.Queue()
        self._conversation = Conversation(stages, store, settings, self._outbox.put_nowait, clients.statuses)
        self._hello: Hello | None = None

    async def run(self) -> None:
        await self._ws.accept()
        if self._drain.draining:  # this replica is stopping: the client goes to another (or to this one, later)
            await self._ws.send_text(json.dumps(reconnect_event("the gateway is restarting")))
            await self._ws.close(code=RESTART_CLOSE_CODE)
            return
        sender = asyncio.create_task(self._send_loop())
        self._drain.track(self.finish)
        try:
            await self._receive_loop()
        except WebSocketDisconnect:
            pass
        finally:
            self._drain.forget(self.finish)
            if self._admitted:
                self._admission.release()
            await self._conversation.close()
            self._outbox.put_nowait(None)
            await asyncio.gather(sender, return_exceptions=True)

    async def finish(self, grace_s: float) -> None:
        """The gateway drains: the reply in flight may finish (up to `grace_s`), then the client is told to
        reconnect and the socket closes with 1012."""
        deadline = asyncio.get_running_loop().time() + grace_s
        while self._conversation.replying() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        self._outbox.put_nowait(reconnect_event("the gateway is restarting"))

    def _error(self, code: ErrorCode, message: str, fatal: bool = False) -> None:
        self._outbox.put_nowait(error_event(code, message, fatal))

    async def _send_loop(self) -> None:
        while (event := await self._outbox.get()) is not None:
            if isinstance(event, bytes):
                await self._ws.send_bytes(event)
                continue
            await self._ws.send_text(json.dumps(event))
            if event.get("fatal"):
                await self._ws.close(code=BUSY_CLOSE_CODE if event["code"] == ErrorCode.BUSY else 1008)
                return
            if event["type"] == "reconnect":
                await self._ws.close(code=RESTART_CLOSE_CODE)
                return

    async def _receive_loop(self) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                self._on_audio(message["bytes"])
            elif message.get("text") is not None and await self._on_text(message["text"]):
                return

    async def _on_text(self, text: str) -> bool:
        """Handle a JSON message; True when the session must end."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            self._error(ErrorCode.BAD_MESSAGE, f"not JSON: {err}")
            return False
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "hello":
            return await self._on_hello(data)
        if self._hello is None:
            self._error(ErrorCode.NOT_READY, f"send a hello before `{kind}`")
        elif kind == "end_of_audio":
            EndOfAudio.model_validate(data)
            self._conversation.end_of_audio()
        elif kind == "keyframe":
            KeyframeRequest.model_validate(data)
            self._conversation.keyframe()
        else:
            self._error(ErrorCode.BAD_MESSAGE, f"unknown message type {kind!r}")
        return False

    async def _on_hello(self, data: dict) -> bool:
        if self._hello is not None:
            self._error(ErrorCode.BAD_MESSAGE, "hello was already sent")
            return False
        try:
            hello = Hello.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            self._error(ErrorCode.BAD_MESSAGE, f"bad hello: {first['msg']} at {first['loc']}")
            return False
        if hello.version != PROTOCOL_VERSION:
            self._error(ErrorCode.UNSUPPORTED_VERSION, f"protocol version {PROTOCOL_VERSION} only", fatal=True)
            return True
        if self._settings.auth_token and not secrets.compare_digest(hello.token, self._settings.auth_token):
            self._error(ErrorCode.UNAUTHORIZED, "missing or wrong token", fatal=True)
            return True
        if not self._admitted and not self._admission.admit():
            self._error(ErrorCode.BUSY, f"this avatar server holds {self._admission.max_sessions} conversations "
                                        "already; try again in a moment", fatal=True)
            return True
        self._admitted = True
        if await self._conversation.start(hello):
            self._hello = hello
        return False

    def _on_audio(self, frame: bytes) -> None:
        if self._hello is None:
            self._error(ErrorCode.NOT_READY, "send a hello before audio")
            return
        width = _SAMPLE_WIDTH[self._hello.audio.encoding]
        if len(frame) > self._settings.max_audio_frame_bytes:
            self._error(ErrorCode.AUDIO_TOO_LARGE,
                        f"audio frame of {len(frame)} bytes exceeds {self._settings.max_audio_frame_bytes}")
        elif len(frame) % width:
            self._error(ErrorCode.BAD_MESSAGE, f"audio frame of {len(frame)} bytes is not whole {width}-byte samples")
        else:
            self._conversation.audio(frame)
