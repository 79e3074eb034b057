"""The user's speech keeps being recognised across stream renewals and cut connections, with nothing lost."""

import asyncio

import pytest

from services.gateway.listening import Listener
from services.gateway.protocol import ErrorCode
from services.gateway.stages import ListenConfig, SpeechEvent, StageFailed, Transcript
from tests.fake_stages import FakeRecognizer

pytestmark = pytest.mark.unit

CONFIG = ListenConfig(16000, "linear16", True, 500)
SECOND = 32000  # bytes of one second of LINEAR16 at 16 kHz


def audio(value: int, seconds: float) -> bytes:
    return bytes([value]) * int(SECOND * seconds)


class Heard:
    def __init__(self, renew_after_s: float = 1000, reopen_attempts: int = 3):
        self.asr = FakeRecognizer()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.messages: list = []
        self.error: StageFailed | None = None
        listener = Listener(self.asr, CONFIG, self.queue, "s", renew_after_s, reopen_attempts)
        self.task = asyncio.create_task(self._collect(listener))

    async def _collect(self, listener: Listener) -> None:
        try:
            async for message in listener.messages():
                self.messages.append(message)
        except StageFailed as err:
            self.error = err

    def send(self, data: bytes) -> None:
        for start in range(0, len(data), 3200):
            self.queue.put_nowait(data[start : start + 3200])

    async def settle(self, seconds: float = 0.05) -> None:
        await asyncio.sleep(seconds)


async def test_a_stream_renewed_after_a_final_gets_the_next_utterances_start_again():
    heard = Heard(renew_after_s=0)
    heard.send(audio(1, 1.0) + audio(0, 0.5) + audio(2, 0.3))  # an utterance, its silence, the next one begins
    await heard.settle()
    heard.asr.say(SpeechEvent("end_of_turn", 1.5), Transcript("first", True))
    await heard.settle()
    heard.send(audio(2, 0.2))
    await heard.settle()
    assert len(heard.asr.streams) == 2
    assert bytes(heard.asr.streams[1]) == audio(2, 0.5)  # 0.3 s sent to the old stream after the turn, + 0.2 s
    heard.asr.say(SpeechEvent("speech_start", 0.0))
    await heard.settle()
    assert heard.messages[-1].t == pytest.approx(1.5)  # counted from the conversation's audio, not the stream's


async def test_a_stream_cut_mid_utterance_is_reopened_with_the_utterance_sent_again():
    heard = Heard()
    heard.send(audio(1, 0.6))
    await heard.settle()
    heard.asr.say(SpeechEvent("speech_start", 0.1), Transcript("hel", False))
    heard.asr.cut()
    await heard.settle(0.3)  # re-opened after a short back-off
    heard.send(audio(1, 0.4))
    await heard.settle()
    assert len(heard.asr.streams) == 2 and bytes(heard.asr.streams[1]) == audio(1, 1.0)
    heard.asr.say(SpeechEvent("end_of_turn", 1.2), Transcript("hello there", True))
    await heard.settle()
    assert heard.messages[-1].text == "hello there" and heard.error is None


async def test_a_recogniser_that_stays_down_ends_with_its_error():
    heard = Heard(reopen_attempts=2)
    heard.send(audio(1, 0.2))
    for _ in range(3):
        heard.asr.cut()
    await asyncio.sleep(0.5)
    assert heard.error is not None and heard.error.code == ErrorCode.STAGE_UNAVAILABLE
    assert len(heard.asr.streams) == 3
