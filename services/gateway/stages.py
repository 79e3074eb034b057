"""What the conversation needs from the four stages, as small interfaces in the conversation's own words.

`grpc_stages.py` implements them over the stages' gRPC streams; the unit tests implement them with fakes, so
the conversation's rules (barge-in, speculation, audio-only fall-back, history, resume) run in milliseconds.
A stage that fails raises `StageFailed`; cancelling the consumer of a stream cancels the stage's call.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from services.gateway.protocol import ErrorCode

OUTPUT_RATE = 16000  # reply audio: 16 kHz LINEAR16 mono, a whole number of samples per 25 fps frame
BYTES_PER_S = OUTPUT_RATE * 2

Metadata = Sequence[tuple[str, str]]  # the trace context a stage call carries


FailureKind = Literal["failed", "unavailable", "busy", "timeout", "invalid_argument", "not_found"]


class StageFailed(Exception):
    """`kind`: what went wrong, in words the REST answers map to HTTP statuses (a WebSocket client gets `code`)."""

    def __init__(self, stage: str, message: str, code: ErrorCode = ErrorCode.STAGE_ERROR, kind: FailureKind = "failed"):
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message
        self.code = code
        self.kind = kind


@dataclass(frozen=True)
class TurnMeta:
    session_id: str
    turn: int

    @property
    def turn_id(self) -> str:
        return f"{self.session_id}:{self.turn}"


# --- speech recognition ---

@dataclass(frozen=True)
class ListenConfig:
    sample_rate: int
    encoding: Literal["linear16", "float32"]
    partial_results: bool
    end_of_turn_silence_ms: int
    end_of_turn: Literal["semantic", "silence"] = "semantic"
    max_end_of_turn_silence_ms: int = 2500
    language: str = ""  # "" = the recogniser's default
    model: str = ""  # "" = the recogniser's default
    vocabulary: tuple[str, ...] = ()  # names and terms the user may say


@dataclass(frozen=True)
class SpeechEvent:
    kind: Literal["speech_start", "speech_resumed", "end_of_turn"]  # resumed: after a speech_paused partial
    t: float  # seconds of the session's audio
    reason: str = ""  # end_of_turn: silence, model, cap or stream_end (what the recogniser ended it by)


@dataclass(frozen=True)
class Word:
    w: str
    start: float
    end: float
    p: float


@dataclass(frozen=True)
class Transcript:
    text: str
    final: bool
    stability: float = 0.0
    speech_paused: bool = False  # the speaker paused: the text covers all speech so far
    words: tuple[Word, ...] = ()
    committed: int = 0  # leading words the recogniser will not change (two decodes agreed on them)


class Recognizer(Protocol):
    def listen(self, config: ListenConfig, audio: AsyncIterator[bytes],
               session_id: str) -> AsyncIterator[SpeechEvent | Transcript]: ...


# --- the reply ---

@dataclass(frozen=True)
class Generation:
    """How the text engine writes (a REST caller's choices; a conversation keeps the avatar's defaults)."""

    model: str = ""  # "" = the default
    system_prompt: str = ""  # "" = the avatar's persona
    max_tokens: int = 0  # 0 = the engine's default
    temperature: float | None = None
    top_p: float = 0.0  # 0 = the engine's default
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class ReplyRequest:
    user_text: str
    history: list[dict]  # {"role": "user"|"assistant", "content": ...}, oldest first, already trimmed
    avatar_id: str
    meta: TurnMeta
    generation: Generation = Generation()


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0


@dataclass(frozen=True)
class Finish:
    """The text engine's last word on a reply: why it stopped and what it used (not every engine says)."""

    reason: Literal["stop", "length"]
    usage: Usage = Usage()


@dataclass(frozen=True)
class Voice:
    """How speech synthesis speaks: a voice ("" = the service's default), a rate, a sample rate."""

    name: str = ""
    speed: float = 1.0
    sample_rate: int = OUTPUT_RATE  # 0 = the voice's own


@dataclass(frozen=True)
class SpeechChunk:
    pcm: bytes  # LINEAR16 at `rate`
    text: str = ""  # the clause this chunk starts speaking, on a clause's first chunk
    rate: int = OUTPUT_RATE
    # Where the voice closes its lips (p, b, m) from this chunk on: (start, end) in seconds from the chunk's first
    # sample, for the face to close them there; empty where the voice gives no phoneme timings.
    lips_closed: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Frame:
    pts_s: float
    pcm: bytes  # the audio this frame shows
    image: bytes  # a JPEG, or one encoded video frame; empty: no picture (keep showing the last one)
    keyframe: bool  # decodes on its own (every JPEG does)


@dataclass
class VideoOut:
    """How a client takes a reply's frames: the codec its hello chose (media_messages.VIDEO_CODECS), whether it asked
    for a keyframe (its decoder lost its place; requests coalesce until the animation stage is told), and which frames
    get a picture (fewer while the machine is behind: `load_shedding.py`)."""

    codec: str = "jpeg"
    keyframe_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    jpeg_quality: int = 0  # 0 = the animation stage's default
    picture_every: int = 1  # one frame in this many has a picture; negative: none (the frames carry their audio)
    picture_rate_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set_picture_every(self, every: int) -> None:
        if every != self.picture_every:
            self.picture_every = every
            self.picture_rate_changed.set()


@dataclass(frozen=True)
class Face:
    """Whose face speaks: an avatar, or the face in a photo (a JPEG or PNG) animated once."""

    avatar_id: str
    photo: bytes = b""


@dataclass(frozen=True)
class Avatars:
    """The avatars the animation stage can show."""

    default: str
    ids: list[str]


@dataclass(frozen=True)
class Voices:
    """The voices speech synthesis can speak with (made avatars' own among them)."""

    default: str
    names: list[str]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    backend: str  # llama_cpp (in the text engine's process) or openai (an OpenAI-compatible server)
    context_tokens: int = 0


class TextEngine(Protocol):
    def generate(self, request: ReplyRequest, metadata: Metadata = ()) -> AsyncIterator[str | Finish]:
        """Text deltas, then (where the engine says) one `Finish`."""

    async def model(self) -> ModelInfo | None:
        """The model that answers; None while the text engine cannot say."""


class Synthesizer(Protocol):
    def synthesize(self, text: AsyncIterator[str], voice: Voice, meta: TurnMeta,
                   metadata: Metadata = ()) -> AsyncIterator[SpeechChunk]: ...

    async def voices(self) -> Voices: ...


class Animator(Protocol):
    def animate(self, speech: AsyncIterator[SpeechChunk], face: Face, meta: TurnMeta, video: VideoOut,
                metadata: Metadata = (), sample_rate: int = OUTPUT_RATE) -> AsyncIterator[Frame]: ...

    async def avatars(self) -> Avatars: ...


@dataclass
class Stages:
    asr: Recognizer
    llm: TextEngine
    tts: Synthesizer
    sda: Animator
