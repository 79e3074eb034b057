"""Stage fakes for the conversation's unit tests: scripted recogniser events, a text engine that answers word by
word, speech of a fixed length per word, and frames every 40 ms (JPEG or encoded). Each can be made to fail."""

import asyncio
from collections.abc import AsyncIterator

from services.gateway.protocol import ErrorCode
from services.gateway.stages import (
    BYTES_PER_S, OUTPUT_RATE, Avatars, Face, Frame, ListenConfig, ModelInfo, ReplyRequest, SpeechChunk, SpeechEvent, Stages,
    StageFailed, Transcript, VideoOut, Voice, Voices,
)

WORD_S = 0.2  # seconds of speech per word
FRAME_BYTES = BYTES_PER_S // 25  # 40 ms of reply audio


class FakeRecognizer:
    """Says what the test scripts (`say`), on whichever stream is open; `cut()` breaks the open stream as a
    connection going away would. `streams` holds the audio each stream received."""

    def __init__(self):
        self.heard = asyncio.Queue()
        self.configs: list[ListenConfig] = []
        self.streams: list[bytearray] = []

    def say(self, *messages: SpeechEvent | Transcript) -> None:
        for message in messages:
            self.heard.put_nowait(message)

    def cut(self) -> None:
        self.heard.put_nowait(StageFailed("speech recognition", "the connection went away", ErrorCode.STAGE_UNAVAILABLE))

    async def listen(self, config, audio: AsyncIterator[bytes], session_id: str):
        self.configs.append(config)
        received = bytearray()
        self.streams.append(received)
        consumer = asyncio.create_task(self._consume(audio, received))
        try:
            while True:
                item = await self.heard.get()
                if isinstance(item, StageFailed):
                    raise item
                yield item
        finally:
            consumer.cancel()

    @staticmethod
    async def _consume(audio: AsyncIterator[bytes], received: bytearray) -> None:
        async for frame in audio:
            received += frame


class FakeTextEngine:
    def __init__(self, answer: str = "Sure. The sea is wide and deep and full of fish and old ships.",
                 word_delay_s: float = 0.0, fail_after_words: int | None = None):
        self.answer = answer
        self.word_delay_s = word_delay_s
        self.fail_after_words = fail_after_words
        self.requests: list[ReplyRequest] = []
        self.cancelled = 0

    async def model(self) -> ModelInfo:
        return ModelInfo("word-by-word", "fake")

    async def generate(self, request: ReplyRequest, metadata=()) -> AsyncIterator[str]:
        self.requests.append(request)
        try:
            for i, word in enumerate(self.answer.split()):
                if self.fail_after_words is not None and i == self.fail_after_words:
                    raise StageFailed("text engine", "the model crashed")
                await asyncio.sleep(self.word_delay_s)
                yield word if i == 0 else " " + word
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


class FakeSynthesizer:
    """Each delta is spoken as its own clause: WORD_S of silence per word; the voices asked for, the text each call
    was given (as given) and how many calls were cancelled are kept."""

    def __init__(self):
        self.spoken_with: list[str] = []
        self.given: list[list[str]] = []
        self.cancelled = 0

    async def voices(self) -> Voices:
        return Voices("en_US-joe-medium", ["en_US-joe-medium", "en_GB-alba-medium"])

    async def synthesize(self, text: AsyncIterator[str], voice: Voice, meta, metadata=()) -> AsyncIterator[SpeechChunk]:
        self.spoken_with.append(voice.name)
        given: list[str] = []
        self.given.append(given)
        try:
            async for delta in text:
                given.append(delta)
                words = len(delta.split())
                yield SpeechChunk(b"\0\0" * int(16000 * WORD_S * words), delta.strip())
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


class FakeAnimator:
    def __init__(self, fail_after_frames: int | None = None):
        self.fail_after_frames = fail_after_frames

    async def avatars(self) -> Avatars:
        return Avatars("default", ["default"])

    async def animate(self, speech: AsyncIterator[SpeechChunk], face: Face, meta, video: VideoOut, metadata=(),
                      sample_rate: int = OUTPUT_RATE) -> AsyncIterator[Frame]:
        """Frames as the animation stage sends them: JPEGs, or encoded frames where the first and any after a
        keyframe request decode on their own."""
        pending = b""
        frames = 0
        async for chunk in speech:
            pending += chunk.pcm
            while len(pending) >= FRAME_BYTES:
                if self.fail_after_frames is not None and frames == self.fail_after_frames:
                    raise StageFailed("animation", "the animation stage went away", ErrorCode.STAGE_UNAVAILABLE)
                asked = video.keyframe_wanted.is_set()
                video.keyframe_wanted.clear()
                image = b"\xff\xd8jpeg" if video.codec == "jpeg" else f"{video.codec} frame {frames}".encode()
                yield Frame(frames * 0.04, pending[:FRAME_BYTES], image, video.codec == "jpeg" or frames == 0 or asked)
                pending = pending[FRAME_BYTES:]
                frames += 1


def fake_stages(**overrides) -> Stages:
    parts = {"asr": FakeRecognizer(), "llm": FakeTextEngine(), "tts": FakeSynthesizer(), "sda": FakeAnimator()}
    parts.update(overrides)
    return Stages(**parts)
