"""One user's conversation on one connection: the session (new or resumed), turns, barge-in, replies, history.

It hears the recogniser's events and transcripts, and answers each final transcript with a reply
(`reply_pipeline.py`). It owns the conversation's rules:
- turn numbers are unique in a session, across reconnects (taken from the session store);
- speech over a reply pauses it at the client at once, unless it is the reply's own sound coming back
  (`echo.py`); it stops the reply once it holds words (`spoken_words.py`) that are not the reply's own, while
  the reply is being made or still playing at the client, and the reply is then remembered as what the user heard
  of it, marked interrupted; speech that holds no such words (a cough, a "mm-hmm", echo) resumes it once the
  speaker stops;
- speculation: an answer started on the transcript decoded at a pause is kept when the final says the same;
- history: stored capped, and trimmed before it goes to the text engine (`history.py`);
- resume: a resumed session keeps its avatar and settings unless the hello changes them.
Everything it says to the client goes through `emit`; it never raises into the transport.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path

from prometheus_client import Counter

from core.asr import vocabulary
from core.avatar_bundle import AVATAR_ID, AvatarBundle, consent_to, is_default
from core.errors import NotFound, Refused
from core.llm.persona import Persona, PersonaBook
from services.gateway import history, media_messages
from services.gateway.access import ANONYMOUS, Denied, Principal
from services.gateway.config import GatewaySettings
from services.gateway.echo import EchoGuard
from services.gateway.listening import Listener
from services.gateway.playback import Playback
from services.gateway.protocol import PROTOCOL_VERSION, ErrorCode, Hello, SessionSettings, error_event
from services.gateway.reply_pipeline import ReplyPipeline
from services.gateway.session_store import SessionStore, StoreUnavailable
from services.gateway.speculation import SpeculationGate
from services.gateway.spoken_words import interrupts, meaningful_words
from services.gateway.stages import (
    ListenConfig, ReplyRequest, SpeechEvent, Stages, StageFailed, Transcript, TurnMeta, VideoOut, Voice, Word,
)

log = logging.getLogger(__name__)
ECHOES = Counter("avatar_gateway_echo_onsets_total", "Speech onsets over a reply found to be the reply's own sound")


def avatar_voice(avatars_dir: str, avatar_id: str) -> str:
    """The voice to ask TTS for: a published avatar's own (its bundle has a voice), else the default ("")."""
    if is_default(avatar_id) or not avatars_dir or not AVATAR_ID.fullmatch(avatar_id):
        return ""
    return avatar_id if AvatarBundle(Path(avatars_dir) / avatar_id).has_voice() else ""


def session_vocabulary(avatars_dir: str, avatar_id: str, own: list[str]) -> tuple[str, ...]:
    """What the recogniser should lean towards: the user's own terms, the avatar's name and its knowledge's names."""
    persona = PersonaBook(avatars_dir, Persona())
    try:
        name = persona.get(avatar_id).name
    except NotFound:
        name = Persona().name
    bundle = persona.bundle(avatar_id)
    return tuple(vocabulary.merged(own, vocabulary.avatar_vocabulary(name, bundle.knowledge if bundle else None)))


class _Reply:
    """A reply of this conversation: the user's words it answers, its pipeline, the task running it, and what
    became of it."""

    def __init__(self, turn: int, user_text: str, pipeline: ReplyPipeline):
        self.turn = turn
        self.user_text = user_text
        self.pipeline = pipeline
        self.task: asyncio.Task | None = None
        self.interrupted = False
        self.resume_timer: asyncio.TimerHandle | None = None

    def audible(self) -> bool:
        """Being made, or still playing at the client, and not interrupted."""
        if self.interrupted:
            return False
        return not self.task.done() or self.pipeline.playback.playing()


class Conversation:
    def __init__(self, stages: Stages, store: SessionStore, settings: GatewaySettings,
                 emit: Callable[[dict | bytes], None], statuses: Callable[[], Awaitable[dict]],
                 clock: Callable[[], float] = time.monotonic, on_late: Callable[[], None] = lambda: None,
                 on_thin: Callable[[], None] = lambda: None):
        self._stages = stages
        self._on_late = on_late  # a reply's media ran out while the user played it
        self._on_thin = on_thin  # a reply's media came within a moment of running out
        self._store = store
        self._settings = settings
        self._emit = emit
        self._statuses = statuses
        self._clock = clock
        self.session_id = ""
        self._avatar_id = "default"
        self._session_settings = SessionSettings()
        self._vocabulary: tuple[str, ...] = ()  # what the recogniser leans towards (session_vocabulary)
        self._audio_format = ("linear16", 16000)
        self._echo = EchoGuard("linear16", 16000, settings.echo_max_delay_s)
        self._media = media_messages.ClientMedia()  # the codecs of this connection's media (the hello chooses them)
        self._turn = 0  # the open turn: the number the next final transcript gets
        self._history: list[dict] = []
        self._appended = 0  # history entries the session ever added (stored ones and those made here)
        self._audio: asyncio.Queue[bytes | None] | None = None
        self._listening: asyncio.Task | None = None
        self._reply: _Reply | None = None
        self._in_speech = False  # the recogniser hears speech (between a speech_start and its end_of_turn)
        self._listened_from_s = 0.0  # where the recogniser's audio began, in seconds of the session's microphone
        self._turn_ended_at: dict[int, float] = {}
        # Words whose reply was cut before any of it played: the user had only paused, and their next words go on
        # from these (a turn ended on "Hello!" and continued "How are you today?" is one question).
        self._unanswered = ""
        self._speculation = SpeculationGate(stages, settings.speculation)
        self._writes: asyncio.Task | None = None  # store writes, chained in order
        self._unsaved: list[Callable[[], Awaitable[None]]] = []  # writes not yet taken by the store

    # --- the session ---

    async def start(self, hello: Hello, principal: Principal = ANONYMOUS) -> bool:
        """A new session, or a stored one resumed; the `ready` event. False when there is no such session, or
        the session store is down (the client may send its hello again). Raises Denied for a session another
        subject opened, or an avatar `principal` is not granted."""
        try:
            return await self._open(hello, principal)
        except StoreUnavailable as err:
            self._emit(error_event(ErrorCode.SESSIONS_UNAVAILABLE, f"{err}; send the hello again shortly"))
            return False

    async def _open(self, hello: Hello, principal: Principal) -> bool:
        settings = self._settings
        video = media_messages.choose(hello.media.video, settings.video_codecs)
        audio = media_messages.choose(hello.media.audio, settings.audio_codecs)
        if video is None or audio is None:
            self._emit(error_event(ErrorCode.UNSUPPORTED_MEDIA, f"none of the codecs {hello.media.model_dump()} is "
                                   f"offered here; offered: video {settings.video_codecs}, audio {settings.audio_codecs}"))
            return False
        self._media = media_messages.ClientMedia(VideoOut(video), audio, settings.opus_kbps)
        wanted = hello.settings.model_dump(exclude_unset=True)
        if hello.session_id:
            stored = await self._store.get(hello.session_id)
            if stored is None:
                self._emit(error_event(ErrorCode.UNKNOWN_SESSION, "no such session (expired?); start a new one"))
                return False
            if stored["subject"] not in (None, principal.subject):
                raise Denied("this session belongs to another user")
            avatar_id = hello.avatar_id if "avatar_id" in hello.model_fields_set else stored["avatar_id"]
            principal.require_avatar(avatar_id)
            if not self._may_converse_with(avatar_id):
                return False
            self.session_id = hello.session_id
            self._avatar_id = avatar_id
            self._session_settings = SessionSettings.model_validate({**stored["settings"], **wanted})
            self._turn = stored["next_turn"]
            self._history = await self._store.history(self.session_id)
            self._appended = stored["appended"]
        else:
            principal.require_avatar(hello.avatar_id)
            if not self._may_converse_with(hello.avatar_id):
                return False
            self._avatar_id = hello.avatar_id
            self._session_settings = hello.settings
        if not await self._voice_is_known(self._session_settings.voice):
            return False  # before anything is stored: a refused hello leaves the session as it was
        if hello.session_id:
            await self._store.update(self.session_id, self._avatar_id, self._session_settings.model_dump())
        else:
            self.session_id = await self._store.create(self._avatar_id, self._session_settings.model_dump(),
                                                       principal.subject)
        self._vocabulary = await asyncio.to_thread(session_vocabulary, settings.avatars_dir, self._avatar_id,
                                                   self._session_settings.vocabulary)
        self._audio_format = (hello.audio.encoding, hello.audio.sample_rate)
        self._echo = EchoGuard(hello.audio.encoding, hello.audio.sample_rate, settings.echo_max_delay_s)
        self._emit({
            "type": "ready",
            "protocol": PROTOCOL_VERSION,
            "session_id": self.session_id,
            "resumed": bool(hello.session_id),
            "avatar_id": self._avatar_id,
            "settings": self._session_settings.model_dump(),
            "next_turn": self._turn,
            "history_messages": len(self._history),
            "stages": await self._statuses(),
            "model": asdict(model) if (model := await self._stages.llm.model()) else None,
            **self._media.describe(),
            **self._webrtc_offer(),
        })
        return True

    def _webrtc_offer(self) -> dict:
        """`ready.webrtc` where this connection may move its media to WebRTC: the ICE servers to use (STUN, TURN
        with its credentials)."""
        if not self._settings.webrtc or not self._media.webrtc_capable:
            return {}
        return {"webrtc": {"ice_servers": [s.model_dump() for s in self._settings.ice_server_list()]}}

    async def _voice_is_known(self, voice: str) -> bool:
        """Whether speech synthesis has the voice the settings name (any, when they name none); if not, says which
        it has. A synthesis stage that cannot answer now is not held against the voice: the replies will say."""
        if not voice:
            return True
        try:
            voices = await self._stages.tts.voices()
        except StageFailed:
            return True
        if voice in voices.names:
            return True
        self._emit(error_event(ErrorCode.UNKNOWN_VOICE, f"no voice {voice!r} here; there are "
                                                        f"{', '.join(voices.names)} (GET /v1/voices)"))
        return False

    def _may_converse_with(self, avatar_id: str) -> bool:
        """Whether the avatar is published and its person consented to live conversation; if not, says why."""
        try:
            consent_to(self._settings.avatars_dir, avatar_id, "conversation")
        except NotFound as err:
            self._emit(error_event(ErrorCode.UNKNOWN_AVATAR, str(err)))
            return False
        except Refused as err:
            self._emit(error_event(ErrorCode.NO_CONSENT, str(err)))
            return False
        return True

    async def close(self) -> None:
        if self._audio is not None:
            self._audio.put_nowait(None)
        if self._listening is not None:
            self._listening.cancel()
        self._speculation.drop()
        if self._reply is not None and self._reply.task is not None and not self._reply.task.done():
            self._barge_in(tell_client=False)  # the connection is gone: remember what was heard
            await asyncio.gather(self._reply.task, return_exceptions=True)
        self._persist()  # a last try for what waits
        await asyncio.gather(self._writes, return_exceptions=True)

    # --- audio in ---

    def audio(self, frame: bytes) -> None:
        if self._audio is None:
            self._listened_from_s = self._echo.heard_s
            self._audio = asyncio.Queue()
            self._listening = asyncio.create_task(self._listen(self._audio))
        self._audio.put_nowait(frame)
        someone = self._echo.heard(frame, self._reply.pipeline.playback if self._reply_audible() else None)
        if someone and self._in_speech:
            self._pause_reply(over_echo=True)  # someone speaks over the reply's echo: the speech's onset was the echo's

    @property
    def media(self) -> media_messages.ClientMedia:
        """The codecs this connection's hello chose."""
        return self._media

    def keyframe(self) -> None:
        """The client's video decoder lost its place: the reply's next frame decodes on its own."""
        self._media.video.keyframe_wanted.set()

    def end_of_audio(self) -> None:
        """The client stopped sending audio for now: the recogniser finishes the pending turn."""
        if self._audio is not None:
            self._audio.put_nowait(None)
            self._audio = None

    async def _listen(self, audio: asyncio.Queue) -> None:
        encoding, rate = self._audio_format
        settings = self._session_settings
        config = ListenConfig(rate, encoding, settings.partial_transcripts, settings.end_of_turn_silence_ms,
                              settings.end_of_turn, settings.max_end_of_turn_silence_ms, vocabulary=self._vocabulary)
        listener = Listener(self._stages.asr, config, audio, self.session_id, self._settings.asr_stream_renew_s,
                            self._settings.asr_reopen_attempts)
        try:
            async for message in listener.messages():
                if isinstance(message, SpeechEvent):
                    self._on_speech_event(message)
                else:
                    await self._on_transcript(message)
        except StageFailed as err:
            self._emit(error_event(err.code, str(err)))
        finally:
            if self._audio is audio:
                self._audio = None

    def _on_speech_event(self, event: SpeechEvent) -> None:
        if event.kind == "speech_resumed":  # the words of its pause resumed the reply, and there are more
            if self._session_settings.barge_in_min_words:
                self._pause_reply()
            return
        self._in_speech = event.kind == "speech_start"
        if event.kind == "speech_start":
            self._emit({"type": event.kind, "turn": self._turn, "t": round(event.t, 3)})
            if self._session_settings.barge_in_min_words == 0:
                self._barge_in()
            else:
                self._pause_reply()
        else:
            self._turn_ended_at[self._turn] = time.perf_counter()
            self._emit({"type": event.kind, "turn": self._turn, "t": round(event.t, 3), "reason": event.reason})

    async def _on_transcript(self, transcript: Transcript) -> None:
        turn = self._turn
        self._emit({
            "type": "transcript",
            "turn": turn,
            "text": transcript.text,
            "final": transcript.final,
            "stability": round(transcript.stability, 3),
            "words": [{"w": w.w, "start": round(w.start, 3), "end": round(w.end, 3), "p": round(w.p, 3)}
                      for w in transcript.words],
        })
        # A partial's words are heard once the recogniser has settled them (two decodes agreed, or the speaker
        # paused): one decode's guess at a short sound ("yeah" read "here") stops nothing. Nor do words it was
        # nearly sure were not there (a cough read as "you").
        stopped = transcript.final or transcript.speech_paused  # the speaker stopped: all their words are settled
        settled = transcript.words if stopped else transcript.words[:transcript.committed]
        words = [w for w in settled if w.p >= self._settings.barge_in_min_probability]
        heard = " ".join(w.w for w in words) if transcript.words else transcript.text
        if interrupts(heard, self._session_settings.barge_in_min_words) and not self._echoed(heard, words):
            self._barge_in()  # words, not a cough, a "mm-hmm" or the reply's own: the user speaks over the reply
        elif stopped:
            self._resume_reply()  # the speaker stopped, and what they said so far stops nothing
        if not transcript.final:
            if not self._reply_audible():  # speech over a reply that goes on is not a question to answer
                self._speculation.on_partial(transcript.text, transcript.speech_paused,
                                             lambda text: self._request(text, turn), self._voice)
            return
        try:
            taken = await self._store.next_turn(self.session_id)
        except StoreUnavailable:
            taken = 0
        self._turn = max(self._turn + 1, taken)
        if taken < self._turn:  # numbered here while the store was down: it learns the count when it is back
            count = self._turn
            self._persist(lambda: self._store.turns_at_least(self.session_id, count))
        if transcript.text and not self._reply_audible():
            self._answer(turn, transcript.text, self._unanswered)
            self._unanswered = ""
        else:
            self._speculation.drop()  # nothing said, or a backchannel heard over the reply: no turn to answer

    # --- replies ---

    def replying(self) -> bool:
        """A reply is being made (its stages are still at work)."""
        return self._reply is not None and self._reply.task is not None and not self._reply.task.done()

    def _reply_audible(self) -> bool:
        return self._reply is not None and self._reply.audible()

    def _request(self, text: str, turn: int) -> ReplyRequest:
        trimmed = history.for_reply(self._history, self._settings.history_tokens, self._settings.history_messages)
        return ReplyRequest(text, trimmed, self._avatar_id, TurnMeta(self.session_id, turn))

    def _voice(self) -> Voice:
        return Voice(self._session_settings.voice or avatar_voice(self._settings.avatars_dir, self._avatar_id))

    def _answer(self, turn: int, text: str, continues: str = "") -> None:
        """A reply to `text`; `continues`: the words it goes on from (their reply was cut unheard), which the
        reply answers with it and the history keeps as one message."""
        ended_at = self._turn_ended_at.pop(turn, time.perf_counter())
        merging = bool(continues) and bool(self._history) and self._history[-1] == history.entry("user", continues)
        if merging:
            self._history.pop()  # stored again below, as the whole message
            text = f"{continues} {text}"
        voice = self._voice()
        speculation = self._speculation.take(text, voice)
        request = self._request(text, turn)
        # the words the reply answers: a kept speculation's, which the final said again with other punctuation or
        # case; the history gives the text engine the very prompt it answered, whose evaluation it kept
        entry = history.entry("user", speculation.text if speculation is not None else text)
        if merging:
            self._history.append(entry)
            self._persist(lambda: self._store.replace_last_history(self.session_id, entry))
        else:
            self._remember(entry)
        pipeline = ReplyPipeline(self._stages, request, voice, self._emit, ended_at, speculation,
                                 Playback(self._clock, self._on_late, self._settings.late_media_s, self._on_thin,
                                          self._settings.thin_media_s),
                                 self._settings.reply_stall_s, self._media,
                                 self._settings.reply_lead_s, self._settings.animation_lead_s)
        reply = _Reply(turn, entry["content"], pipeline)
        reply.task = asyncio.create_task(self._run_reply(reply))
        self._reply = reply

    async def _run_reply(self, reply: _Reply) -> None:
        try:
            await reply.pipeline.run()
        except asyncio.CancelledError:
            return  # barge-in: `_barge_in` remembered what was heard
        if reply.pipeline.text and not reply.interrupted:
            self._remember(history.entry("assistant", reply.pipeline.text))

    def _echoed(self, text: str, words: list[Word]) -> bool:
        """Words heard over the reply are its own, come back through the speakers: no one else spoke into the
        microphone while they were said, and they say what it just said, or the microphone still sounds like it."""
        if not self._reply_audible():
            return False
        start = self._listened_from_s  # the words are timed from there
        if any(self._echo.someone_else_during(start + w.start, start + w.end) for w in words if meaningful_words(w.w)):
            return False
        playback = self._reply.pipeline.playback
        echoed = self._echo.says_like(text, playback) or self._echo.sounds_like(playback)
        log.debug("words over the reply at %.1f s of it: %r, %s", playback.heard_s(), text[-80:],
                  "its echo" if echoed else "the user's")
        return echoed

    def _pause_reply(self, over_echo: bool = False) -> None:
        """Speech began over the reply (`over_echo`: someone began to speak over its echo): the client pauses it
        until the speech is known to be words or not; the reply's own sound coming back through the speakers
        pauses nothing."""
        reply = self._reply
        if reply is None or not reply.audible() or reply.pipeline.playback.paused:
            return
        if not over_echo and self._echo.sounds_like(reply.pipeline.playback):
            ECHOES.inc()
            return
        reply.pipeline.playback.pause()
        reply.resume_timer = asyncio.get_running_loop().call_later(self._settings.pause_resume_s, self._resume_reply)
        self._emit({"type": "pause", "turn": reply.turn})

    def _resume_reply(self) -> None:
        """The speech over the paused reply held no words: it goes on where it paused."""
        reply = self._reply
        if reply is None or not reply.pipeline.playback.paused:
            return
        if reply.resume_timer is not None:
            reply.resume_timer.cancel()
        reply.pipeline.playback.resume()
        if reply.audible():
            self._emit({"type": "resume", "turn": reply.turn})

    def _barge_in(self, tell_client: bool = True) -> None:
        """The user speaks over the reply: stop what is left of it, tell the client to drop what it queued, and
        remember the reply as far as it was heard."""
        reply = self._reply
        if reply is None or not reply.audible():
            return
        reply.interrupted = True
        if reply.resume_timer is not None:
            reply.resume_timer.cancel()
        heard = reply.pipeline.playback.heard_text()
        made = not reply.task.done()
        reply.task.cancel()
        if tell_client:
            self._emit({"type": "interrupted", "turn": reply.turn, "heard": heard})
        if made:
            if heard:
                self._remember(history.entry("assistant", heard, interrupted=True))
            elif reply.pipeline.playback.heard_s() == 0:
                self._unanswered = reply.user_text
        elif self._history and self._history[-1]["role"] == "assistant":
            self._history[-1] = history.entry("assistant", heard, interrupted=True)
            last = self._history[-1]
            self._persist(lambda: self._store.replace_last_history(self.session_id, last))

    def _remember(self, item: dict) -> None:
        self._history.append(item)
        del self._history[: history.blocks_to_drop(len(self._history), self._settings.history_stored)]
        self._appended += 1
        number = self._appended
        self._persist(lambda: self._store.append_history(self.session_id, item, number))

    def _persist(self, write: Callable[[], Awaitable[None]] | None = None) -> None:
        """Store writes run one after another, in the order the conversation made them. While the store is down
        they wait (the conversation goes on from memory) and are written back with the next write after it is up."""
        if write is not None:
            self._unsaved.append(write)
        previous = self._writes

        async def flush() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            while self._unsaved:
                try:
                    await self._unsaved[0]()
                except StoreUnavailable as err:
                    log.warning("session %s: %d write(s) wait for the store: %s", self.session_id,
                                len(self._unsaved), err)
                    return
                self._unsaved.pop(0)

        self._writes = asyncio.create_task(flush())
