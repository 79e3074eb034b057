"""The streaming synthesizer: text deltas in, clause-by-clause audio chunks with phoneme timings out."""

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from core.audio import resample
from core.tts.backends.base_backend import Phoneme, TtsBackend
from core.tts.text_normalizer import normalize
from services.common.priority_turns import Playout, PriorityTurns
from services.tts.clause_splitter import ClauseSplitter

FLUSH = object()  # an input item: speak what is pending now
Mark = Callable[[np.ndarray, int], np.ndarray]  # audio at a rate -> the same audio, watermarked
_ANIMATED_AHEAD_S = 0.5  # the face is made of a clause's audio about this long before its listener hears it


@dataclass(frozen=True)
class Chunk:
    audio: np.ndarray  # float32 at the output rate
    start_s: float  # position in the stream
    text: str  # the clause, on its first chunk only
    phonemes: tuple[Phoneme, ...]  # times in seconds from the start of the stream


@dataclass(frozen=True)
class Finished:
    total_s: float


class StreamingSynthesizer:
    def __init__(
        self,
        backend: TtsBackend,
        sample_rate: int,
        speaking_rate: float,
        turns: PriorityTurns,
        chunk_s: float = 0.2,
        mark: Mark | None = None,
    ):
        self._backend = backend
        self._mark = mark
        self._rate = sample_rate
        self._speaking_rate = speaking_rate
        self._turns = turns
        self._chunk = max(1, int(chunk_s * sample_rate))
        self._clauses: asyncio.Queue[str | None] = asyncio.Queue()
        self._position = 0  # samples sent
        self._playout = Playout()  # when the listener hears each moment of the stream (its first clause: at once)

    async def run(self, items: AsyncIterator[str | object]) -> AsyncIterator[Chunk | Finished]:
        reader = asyncio.create_task(self._read(items))
        try:
            while (clause := await self._clauses.get()) is not None:
                for chunk in await self._speak(clause):
                    yield chunk
            await reader  # surfaces a bad request raised while reading
            yield Finished(self._position / self._rate)
        finally:
            reader.cancel()

    async def _read(self, items: AsyncIterator[str | object]) -> None:
        splitter = ClauseSplitter()
        try:
            async for item in items:
                if item is FLUSH:
                    clauses = [c for c in [splitter.flush()] if c]
                else:
                    clauses = splitter.push(item)
                for clause in clauses:
                    self._clauses.put_nowait(clause)
            if rest := splitter.flush():
                self._clauses.put_nowait(rest)
        finally:
            self._clauses.put_nowait(None)

    async def _speak(self, clause: str) -> list[Chunk]:
        text = normalize(clause)
        if not text:
            return []
        start = self._position / self._rate
        async with self._turns.turn(self._playout.due(start - _ANIMATED_AHEAD_S)):
            utterance, audio = await asyncio.to_thread(self._render, text)
        if not self._playout.begun:
            self._playout.begin(0.0)  # the stream's first audio goes out now
        phonemes = [Phoneme(p.symbol, p.start_s + start, p.end_s + start) for p in utterance.phonemes]
        chunks = []
        for offset in range(0, audio.size, self._chunk):
            piece = audio[offset : offset + self._chunk]
            begin = start + offset / self._rate
            end = begin + piece.size / self._rate
            inside = tuple(p for p in phonemes if begin <= p.start_s < end)
            chunks.append(Chunk(piece, begin, clause if offset == 0 else "", inside))
        self._position += audio.size
        return chunks

    def _render(self, text: str):
        """The clause spoken, at the output rate, marked as generated where a mark is set."""
        utterance = self._backend.synthesize(text, self._speaking_rate)
        audio = resample(utterance.audio, self._backend.voice.sample_rate, self._rate)
        if self._mark is not None:
            audio = self._mark(audio, self._rate)
        return utterance, audio
