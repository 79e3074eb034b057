"""The browser's WebSocket: messages in (JSON control messages, binary audio), events and media out.

It checks every message against the protocol (docs/websocket.md) and hands what is valid to the conversation;
a bad message is answered with an `error` event and dropped, and the session goes on. Media travel as binary
messages (`media_messages.py`); everything goes out through one queue, in order.

What a hostile client can cost is bounded: a page from an origin not allowed is refused, sockets are capped per
client address and in all, a socket without a valid hello soon after it opened is closed, and a client that does
not read what is sent (so that more than `max_queued_bytes` wait for it) is dropped instead of buffered, and so is
one that sends message after refused message (past `max_refused_burst`): neither can keep the gateway reading or
answering.
"""

import asyncio
import json
import logging

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from services.gateway import media_messages
from services.gateway.access import Access, Denied
from services.gateway.admission import BUSY_CLOSE_CODE, Admission
from services.gateway.config import GatewaySettings
from services.gateway.conversation import Conversation
from services.gateway.draining import RESTART_CLOSE_CODE, Drain, reconnect_event
from services.gateway.protocol import (
    PROTOCOL_VERSION,
    EndOfAudio,
    ErrorCode,
    Hello,
    KeyframeRequest,
    WebRtcClose,
    WebRtcOffer,
    error_event,
)
from services.gateway.session_store import SessionStore
from services.gateway.socket_limits import SocketLimits
from services.gateway.stage_channels import StageClients
from services.gateway.stages import Stages

log = logging.getLogger(__name__)
_SAMPLE_WIDTH = {"linear16": 2, "float32": 4}
POLICY_CLOSE_CODE = 1008
_LAST_WORD_S = 2.0  # how long a dropped client's last event may take to go out
_OFFER_GAP_S = 2.0  # a client may offer WebRTC at most this often


class WebSocketTransport:
    def __init__(self, ws: WebSocket, stages: Stages, clients: StageClients, store: SessionStore,
                 settings: GatewaySettings, drain: Drain, admission: Admission, access: Access,
                 sockets: SocketLimits):
        self._ws = ws
        self._drain = drain
        self._admission = admission
        self._admitted = False
        self._access = access
        self._sockets = sockets
        self._settings = settings
        self._outbox: asyncio.Queue[dict | bytes | None] = asyncio.Queue()
        self._queued_bytes = 0
        self._dropped = ""  # why the client was dropped: what is queued for it will not be sent
        self._refusals = float(settings.max_refused_burst)  # a token bucket: one back a second
        self._refused_at = 0.0
        self._conversation = Conversation(stages, store, settings, self._put, clients.statuses,
                                          on_late=admission.ran_late, on_thin=admission.ran_thin)
        self._hello: Hello | None = None
        self._receiving: asyncio.Task | None = None
        self._peer = None  # a WebRtcPeer once the client has offered WebRTC
        self._socket_turn = -1  # the reply whose media the WebSocket carries (it started or went on there)
        self._offered_at = -_OFFER_GAP_S  # when the last offer was taken (each costs ports and a handshake)

    def _allowed_origin(self) -> bool:
        """A browser page may open the socket from the gateway's own origin or one allowed; a client that sends no
        Origin is no browser page (a browser always sends one)."""
        origin = self._ws.headers.get("origin")
        if origin is None or "*" in self._settings.allowed_origins or origin in self._settings.allowed_origins:
            return True
        host = self._ws.headers.get("host", "")
        return origin in (f"http://{host}", f"https://{host}")

    async def run(self) -> None:
        if not self._allowed_origin():
            log.warning("a WebSocket from origin %r refused (GATEWAY_ALLOWED_ORIGINS)", self._ws.headers.get("origin"))
            await self._ws.close(code=POLICY_CLOSE_CODE)  # before the handshake: the browser gets 403
            return
        address = self._ws.client.host if self._ws.client else ""
        refused = self._sockets.take(address)
        await self._ws.accept()
        if refused is not None:
            await self._ws.send_text(json.dumps(error_event(ErrorCode.TOO_MANY_SOCKETS, refused, fatal=True)))
            await self._ws.close(code=BUSY_CLOSE_CODE)
            return
        try:
            await self._serve()
        finally:
            self._sockets.release(address)

    async def _serve(self) -> None:
        if self._drain.draining:  # this replica is stopping: the client goes to another (or to this one, later)
            await self._ws.send_text(json.dumps(reconnect_event("the gateway is restarting")))
            await self._ws.close(code=RESTART_CLOSE_CODE)
            return
        sender = asyncio.create_task(self._send_loop())
        self._drain.track(self.finish)
        self._receiving = asyncio.create_task(self._receive_loop())
        try:
            await self._receiving
        except WebSocketDisconnect:
            pass
        except asyncio.CancelledError:
            if not self._dropped:
                raise
        finally:
            self._drain.forget(self.finish)
            if self._admitted:
                self._admission.release()
            if self._peer is not None:
                await self._peer.close()
            await self._conversation.close()
            if self._dropped:
                # what is queued for it goes no further; a last word (why it is closed) gets a moment, no more
                await asyncio.wait([sender], timeout=_LAST_WORD_S)
                sender.cancel()
            else:
                self._outbox.put_nowait(None)
            await asyncio.gather(sender, return_exceptions=True)

    def _put(self, event: dict | bytes) -> None:
        """Queue an event or media message for the client; one that lets more than `max_queued_bytes` wait drops
        the client (it does not read: a dead connection, or a client that only sends)."""
        if self._dropped:
            return
        if self._peer is not None and self._peer.carries_media:  # media over RTP; events where the client reads them
            if isinstance(event, bytes) and media_messages.turn_of(event) != self._socket_turn:
                self._peer.media(event)
                return
            self._peer.follow(event)
            closes = event.get("fatal") or event["type"] == "reconnect"  # the socket closes after these
            if not closes and self._peer.send_event(event):
                return
        if isinstance(event, bytes):
            self._socket_turn = media_messages.turn_of(event)  # a reply plays to its end on the WebSocket
        self._queued_bytes += len(event) if isinstance(event, bytes) else 256
        if self._queued_bytes > self._settings.max_queued_bytes:
            self._drop(f"it read nothing of {self._queued_bytes} bytes sent to it")
            return
        self._outbox.put_nowait(event)

    def _drop(self, why: str, last_word: dict | None = None) -> None:
        """Stop reading from the client and sending it what is queued; only `last_word` may still go (for a
        moment), then the socket closes."""
        self._dropped = why
        log.warning("a client was dropped: %s", why)
        while not self._outbox.empty():
            self._outbox.get_nowait()
        if last_word is not None:
            self._outbox.put_nowait(last_word)
        if self._receiving is not None:
            self._receiving.cancel()

    async def finish(self, grace_s: float) -> None:
        """The gateway drains: the reply in flight may finish (up to `grace_s`), then the client is told to
        reconnect and the socket closes with 1012."""
        deadline = asyncio.get_running_loop().time() + grace_s
        while self._conversation.replying() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        self._outbox.put_nowait(reconnect_event("the gateway is restarting"))

    def _error(self, code: ErrorCode, message: str, fatal: bool = False) -> None:
        self._put(error_event(code, message, fatal))

    def _refuse(self, code: ErrorCode, message: str) -> None:
        """A message refused, the session going on: answered while the client keeps within its budget."""
        now = asyncio.get_running_loop().time()
        self._refusals = min(self._settings.max_refused_burst, self._refusals + (now - self._refused_at))
        self._refused_at = now
        if self._refusals < 1:
            why = f"more than {self._settings.max_refused_burst} refused messages at once"
            self._drop(why, error_event(ErrorCode.TOO_MANY_REFUSALS, f"{why}: closed", fatal=True))
            return
        self._refusals -= 1
        self._error(code, message)

    async def _send_loop(self) -> None:
        while (event := await self._outbox.get()) is not None:
            self._queued_bytes -= len(event) if isinstance(event, bytes) else 256
            if isinstance(event, bytes):
                await self._ws.send_bytes(event)
                continue
            await self._ws.send_text(json.dumps(event))
            if event.get("fatal"):
                busy = event["code"] in (ErrorCode.BUSY, ErrorCode.TOO_MANY_SOCKETS)
                await self._ws.close(code=BUSY_CLOSE_CODE if busy else POLICY_CLOSE_CODE)
                return
            if event["type"] == "reconnect":
                await self._ws.close(code=RESTART_CLOSE_CODE)
                return

    async def _receive_loop(self) -> None:
        hello_by = asyncio.get_running_loop().time() + self._settings.hello_timeout_s
        while True:
            if self._hello is None:
                try:
                    message = await asyncio.wait_for(self._ws.receive(), hello_by - asyncio.get_running_loop().time())
                except TimeoutError:
                    self._error(ErrorCode.HELLO_TIMEOUT, f"no valid hello within {self._settings.hello_timeout_s:.0f} s "
                                                         "of opening the socket", fatal=True)
                    return
            else:
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
            self._refuse(ErrorCode.BAD_MESSAGE, f"not JSON: {err}")
            return False
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "hello":
            return await self._on_hello(data)
        if self._hello is None:
            self._refuse(ErrorCode.NOT_READY, f"send a hello before `{kind}`")
        elif kind == "end_of_audio":
            EndOfAudio.model_validate(data)
            self._conversation.end_of_audio()
        elif kind == "keyframe":
            KeyframeRequest.model_validate(data)
            self._conversation.keyframe()
        elif kind == "webrtc_offer":
            try:
                offer = WebRtcOffer.model_validate(data)
            except ValidationError as err:
                self._refuse(ErrorCode.BAD_MESSAGE, f"bad webrtc_offer: {err.errors()[0]['msg']}")
                return False
            await self._on_offer(offer)
        elif kind == "webrtc_close":
            WebRtcClose.model_validate(data)
            if self._peer is not None:
                self._peer_closed(self._peer)
        else:
            self._refuse(ErrorCode.BAD_MESSAGE, f"unknown message type {kind!r}")
        return False

    async def _on_hello(self, data: dict) -> bool:
        if self._hello is not None:
            self._refuse(ErrorCode.BAD_MESSAGE, "hello was already sent")
            return False
        try:
            hello = Hello.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            self._refuse(ErrorCode.BAD_MESSAGE, f"bad hello: {first['msg']} at {first['loc']}")
            return False
        if hello.version != PROTOCOL_VERSION:
            self._error(ErrorCode.UNSUPPORTED_VERSION, f"protocol version {PROTOCOL_VERSION} only", fatal=True)
            return True
        try:
            principal = self._access.check(hello.token)
        except Denied as err:
            self._error(ErrorCode.UNAUTHORIZED, str(err), fatal=True)
            return True
        try:
            principal.require("converse")
        except Denied as err:
            self._error(ErrorCode.FORBIDDEN, str(err), fatal=True)
            return True
        if not self._admitted and not self._admission.admit():
            self._error(ErrorCode.BUSY, f"this avatar server holds {self._admission.admitted} conversations, as "
                                        "many as it can keep in real time; try again in a moment", fatal=True)
            return True
        self._admitted = True
        try:
            started = await self._conversation.start(hello, principal)
        except Denied as err:  # another's session, or an avatar the token does not grant
            self._error(ErrorCode.FORBIDDEN, str(err), fatal=True)
            return True
        if started:
            self._hello = hello
        return False

    async def _on_offer(self, offer: WebRtcOffer) -> None:
        """The client offers WebRTC: answered over the WebSocket; the media move to the peer connection once it
        is up (services/gateway/webrtc.py). A new offer replaces the last peer connection."""
        media = self._conversation.media
        now = asyncio.get_running_loop().time()
        if now - self._offered_at < _OFFER_GAP_S:
            self._refuse(ErrorCode.WEBRTC_UNAVAILABLE, f"one WebRTC offer every {_OFFER_GAP_S:.0f} s at most")
            return
        self._offered_at = now
        if not self._settings.webrtc:
            self._refuse(ErrorCode.WEBRTC_UNAVAILABLE, "this gateway offers no WebRTC (GATEWAY_WEBRTC)")
            return
        if not media.webrtc_capable:
            self._refuse(ErrorCode.WEBRTC_UNAVAILABLE, "WebRTC carries H.264 or VP8 video and Opus audio: list them "
                                                       "first in the hello's media")
            return
        from services.gateway.webrtc import WebRtcPeer  # aiortc loads only for a client that asks for it

        if self._peer is not None:
            self._peer_closed(self._peer)
        peer = WebRtcPeer(self._settings.ice_server_list(), media.video.codec, self._hello.audio,
                          self._conversation.audio, self._conversation.keyframe, self._peer_closed,
                          media.pre_skip_s())
        try:
            sdp = await peer.answer(offer.sdp)
        except ValueError as err:
            await peer.close()
            self._refuse(ErrorCode.BAD_MESSAGE, f"bad WebRTC offer: {err}")
            return
        self._peer = peer
        self._put({"type": "webrtc_answer", "sdp": sdp})

    def _peer_closed(self, peer) -> None:
        """The peer connection failed or closed: media go back to the WebSocket (the client may offer again)."""
        if peer is self._peer:
            self._peer = None
            for message in peer.unplayed():  # the reply goes on where the connection left it
                self._put(message)
            asyncio.get_running_loop().create_task(peer.close())

    def _on_audio(self, frame: bytes) -> None:
        if self._hello is None:
            self._refuse(ErrorCode.NOT_READY, "send a hello before audio")
            return
        width = _SAMPLE_WIDTH[self._hello.audio.encoding]
        if len(frame) > self._settings.max_audio_frame_bytes:
            self._refuse(ErrorCode.AUDIO_TOO_LARGE,
                         f"audio frame of {len(frame)} bytes exceeds {self._settings.max_audio_frame_bytes}")
        elif len(frame) % width:
            self._refuse(ErrorCode.BAD_MESSAGE, f"audio frame of {len(frame)} bytes is not whole {width}-byte samples")
        else:
            self._conversation.audio(frame)
