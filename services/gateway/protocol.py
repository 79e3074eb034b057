"""The WebSocket protocol (version 1), documented in docs/websocket.md: the messages and the error codes."""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from core.asr.vocabulary import MAX_TERM_CHARS, MAX_TERMS
from services.common import end_of_turn as turn_end

PROTOCOL_VERSION = 1


class ErrorCode(StrEnum):
    BAD_MESSAGE = "bad_message"  # not JSON, unknown type, fields missing or wrong
    UNSUPPORTED_VERSION = "unsupported_version"
    UNAUTHORIZED = "unauthorized"
    NOT_READY = "not_ready"  # a message that needs the hello before it
    UNKNOWN_SESSION = "unknown_session"
    UNKNOWN_AVATAR = "unknown_avatar"  # the hello's avatar is not published here
    NO_CONSENT = "no_consent"  # the avatar's person did not consent to conversation, or withdrew their consent
    AUDIO_TOO_LARGE = "audio_too_large"
    STAGE_UNAVAILABLE = "stage_unavailable"  # a stage is down or not loaded: the turn degrades or ends
    STAGE_ERROR = "stage_error"  # a stage refused or failed the request
    SESSIONS_UNAVAILABLE = "sessions_unavailable"  # the session store (Redis) is down: retry the hello shortly
    UNSUPPORTED_MEDIA = "unsupported_media"  # none of the hello's video (or audio) codecs is offered here
    BUSY = "busy"  # the gateway holds as many conversations as it can: the socket closes (1013); retry later
    FORBIDDEN = "forbidden"  # the token is good but does not grant this (an avatar, conversing, another's session)
    TOO_MANY_SOCKETS = "too_many_sockets"  # too many sockets open from this address (or in all): the socket closes
    HELLO_TIMEOUT = "hello_timeout"  # no valid hello soon enough after the socket opened: the socket closes
    TOO_MANY_REFUSALS = "too_many_refusals"  # message after refused message (junk, a flood): the socket closes
    UNKNOWN_VOICE = "unknown_voice"  # the hello's settings.voice is none of those GET /v1/voices lists
    WEBRTC_UNAVAILABLE = "webrtc_unavailable"  # this gateway has WebRTC off, or the hello's media cannot go over it


class AudioSpec(BaseModel):
    sample_rate: int = Field(default=16000, ge=8000, le=48000)
    encoding: Literal["linear16", "float32"] = "linear16"


class SessionSettings(BaseModel):
    # How the recogniser decides that the user has finished: semantic (the end-of-turn model judges each pause;
    # a turn that sounds unfinished waits up to max_end_of_turn_silence_ms) or silence (end_of_turn_silence_ms).
    end_of_turn: Literal["semantic", "silence"] = "semantic"
    end_of_turn_silence_ms: turn_end.SilenceMs = 500
    max_end_of_turn_silence_ms: int = Field(default=2500, ge=250, le=turn_end.LONGEST_MS)  # 250: the judgement's
    partial_transcripts: bool = True
    # Which voice speaks the replies: one that GET /v1/voices lists; empty, the avatar's own (else the default).
    voice: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")
    # Speech over a reply cancels it once the recogniser has heard this many words in it (fillers and backchannels
    # such as "hmm" or "uh-huh" do not count): a cough, a click or a "mm-hmm" does not. 0: at speech start.
    barge_in_min_words: int = Field(default=1, ge=0, le=10)
    # Names and terms the user may say, which the recogniser should lean towards (besides the avatar's own name and
    # the names in its knowledge).
    vocabulary: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                      max_length=MAX_TERM_CHARS)]] = Field(
        default=[], max_length=MAX_TERMS)


VideoCodec = Literal["h264", "vp8", "jpeg"]
AudioCodec = Literal["opus", "linear16"]


class MediaSpec(BaseModel):
    # The codecs the client can decode, most preferred first; the gateway takes the first of each it offers (the
    # `ready` event's `output_video` and `output_audio`). JPEG frames and PCM need no decoder; H.264, VP8 and Opus
    # need one (WebCodecs).
    video: list[VideoCodec] = Field(default=["jpeg"], min_length=1, max_length=3)
    audio: list[AudioCodec] = Field(default=["linear16"], min_length=1, max_length=2)


class Hello(BaseModel):
    type: Literal["hello"]
    version: int
    token: str = ""
    avatar_id: str = "default"
    # Resume an earlier session (its history and settings) instead of starting a new one.
    session_id: str | None = None
    audio: AudioSpec = AudioSpec()
    settings: SessionSettings = SessionSettings()
    media: MediaSpec = MediaSpec()


class WebRtcOffer(BaseModel):
    """The client's SDP offer: its microphone as audio (sendrecv or recvonly) and a video section to receive."""

    type: Literal["webrtc_offer"]
    sdp: str = Field(min_length=1, max_length=64 * 1024)


class WebRtcClose(BaseModel):
    """The client gave up its peer connection (it failed, or the user chose the WebSocket): media come back here."""

    type: Literal["webrtc_close"]


class KeyframeRequest(BaseModel):
    """Encoded video: the client's decoder lost its place (a decode error); the next frame will decode alone."""

    type: Literal["keyframe"]


class EndOfAudio(BaseModel):
    """The client stopped sending audio for now (push-to-talk released): finish the pending turn."""

    type: Literal["end_of_audio"]


def error_event(code: ErrorCode, message: str, fatal: bool = False) -> dict:
    return {"type": "error", "code": code.value, "message": message, "fatal": fatal}
