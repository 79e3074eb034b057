"""The streaming recognizer: VAD turn detection, partials by LocalAgreement-2, fast finals.

One `StreamingRecognizer` serves one gRPC stream. A feeder runs Silero VAD on every 32 ms window as audio
arrives and cuts it into turns; a decoder re-transcribes the growing turn buffer in the background:
- every `partial_interval_s` of new speech, a partial hypothesis; words on which two consecutive hypotheses
  agree are committed and never change (LocalAgreement-2, as in whisper_streaming);
- as soon as the speaker pauses, a decode of the whole turn (the words its end is judged by, a partial marked
  `speech_paused`), then the final's decode of it (beam search, where the backend's final reads more), so when the
  pause turns into an end of turn the final is usually ready already and costs no decode at all. Audio sent
  faster than it is spoken (a recording) gets no such decodes: the rest of the turn is already on its way, and
  they would only be done again. The pause's decode adds words after those the partials committed (the judgement
  was tuned on those words: reading the whole turn anew, greedily, misheard more questions as sentences left
  open); the final's decode of the whole turn (one not yet trimmed past `max_buffer_s`) is the turn's words from
  then on: it reads every word with all the audio around it, where the partials' words were fixed on shorter
  windows, so it may correct words they had committed (a second `speech_paused` partial says so before the final
  does). The reply is not held for it: when the final's decode is not done `final_late_s` after the end of turn,
  the pause's words are the final (a recording, whose pauses are not decoded, always waits for the final's decode).

When a turn ends: by the silence rule, after `end_of_turn_s` of silence; or, semantic, the turn is judged once the
speaker has been silent `judge_after_s`: the whole turn is decoded, unless a decode already covers the pause, and
the end-of-turn model reads its words (`core/asr/turn_end.py`), so the verdict is ready before the silence it asks
for has passed. Words that read as a whole message end the turn after `complete_end_s` of silence ("model": not
sooner, since people and voices pause 250-450 ms between two sentences of one turn, and "Hello!" reads whole); words
whose only sign of an end is the recogniser's question mark after `asked_end_s` (a small model reads "can you help
me plan a trip" as a request about to go on); words left open ("I'd like to", "can you tell me about", "um", or the
recogniser's own trailing "..." or comma) wait for more speech up to `max_end_of_turn_s` of silence ("cap"), as do
words whose last one the recogniser is unsure of, unless it heard a question: Whisper reads a clause cut off by a
thinking pause as a whole sentence with a misheard last word ("I was thinking her"), and a model that reads only the
words cannot tell. Words that would wait out the cap get a second reading, the final's decode (beam search over the
whole turn, begun in the pause): read whole there, their last word sure, they end the turn after
`second_reading_end_s`. An early end that proves wrong costs little: speech that comes back before any of the reply was
heard makes the gateway answer both parts as one message. A turn without words, or a server without the model, keeps
the silence rule ("silence"). The feeder waits for the judgement before it reads on, so the decision falls at the
same place in the audio however fast the audio comes. Each end of turn says which rule ended it.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from core.asr import turn_end
from core.asr.backends.base_backend import AsrBackend, Effort, Word, cut_loop
from core.asr.vad import WINDOW, SileroVad
from services.common import metrics

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class RecognizerConfig:
    end_of_turn_s: float = 0.5  # the silence rule
    end_of_turn: Literal["silence", "semantic"] = "silence"
    # Semantic: the silence after which the model judges the turn; the model's probabilities from which the words
    # are a whole message, or (with the recogniser's "?") a question, and the silence each ends the turn after; the
    # longest silence a turn that sounds unfinished waits.
    judge_after_s: float = 0.25
    complete_above: float = 0.01
    complete_end_s: float = 0.4
    asked_above: float = 0.0005
    asked_end_s: float = 0.8
    # Words that would wait out the cap, read whole by the final's decode of them: the silence that ends the turn.
    second_reading_end_s: float = 1.0
    # The recogniser's confidence in the last word below which the words may be misheard: such a turn waits as
    # one left open.
    sure_above: float = 0.4
    max_end_of_turn_s: float = 2.5
    partials: bool = True
    language: str | None = "en"
    partial_interval_s: float = 0.5
    pause_s: float = 0.2  # silence after which the whole turn is decoded ahead of the end of turn
    speech_threshold: float = 0.5
    min_speech_s: float = 0.064
    # Audio kept from before the speech was detected (at most since the last turn ended), and more of it before
    # that for the final's decode: Whisper's beam search reads a turn's first words better with a second of the
    # room before them (the benches' final WER with noise: 11.4% at 0.3 s, 7.5% at 1 s), while the greedy decodes
    # a turn's end is judged by were tuned on 0.3 s (and read sentences left open as closed more often with 1 s).
    preroll_s: float = 0.3
    final_lead_s: float = 0.7
    # How long past the end of turn a real-time turn's final waits for the final's decode (started in the pause)
    # before the pause's words stand for it.
    final_late_s: float = 0.15
    max_buffer_s: float = 15.0
    # Audio that runs this far ahead of its arrival over the last `rate_window_s` is sent faster than spoken.
    ahead_of_time_s: float = 0.5
    rate_window_s: float = 1.0
    # A client that sends nothing in a pause is silent: its pause is judged by the wall clock, this much later.
    quiet_margin_s: float = 0.5
    # Names and terms the speaker may say (the avatar's name, its knowledge's proper nouns): recognition leans to them.
    vocabulary: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpeechStarted:
    turn_index: int
    offset_s: float
    resumed: bool = False  # speech again after the turn's speech_paused partial: its words were not the last


@dataclass(frozen=True)
class TurnEnded:
    turn_index: int
    offset_s: float
    reason: Literal["silence", "model", "cap", "stream_end"] = "silence"
    complete_probability: float | None = None  # how complete the model read the turn's words, where it judged


class TurnEndJudge(Protocol):
    def complete_probability(self, text: str) -> float:
        """How complete the words of a turn read, in [0, 1]."""


@dataclass(frozen=True)
class Transcript:
    turn_index: int
    words: tuple[Word, ...]  # times in seconds from the start of the stream
    committed: int
    is_final: bool
    audio_processed_s: float
    speech_paused: bool = False

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


Event = SpeechStarted | TurnEnded | Transcript


@dataclass
class _Turn:
    index: int
    start_sample: int  # stream position of buffer[0]
    first_sample: int = 0  # stream position where the turn began (start_sample moves on when the buffer is trimmed)
    lead: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # the room before it, for the final
    buffer: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    speech_end: int = 0  # buffer position just after the last speech window
    ended: bool = False
    committed: list[Word] = field(default_factory=list)
    previous: list[Word] = field(default_factory=list)
    tentative: list[Word] = field(default_factory=list)
    decoded_samples: int = 0  # buffer length covered by the latest decode
    paused_samples: int = 0  # ... by the latest decode of a pause's effort or more (the words a pause is judged by)
    final_samples: int = 0  # ... by the latest decode of a final's effort
    pause_words: list[Word] = field(default_factory=list)  # the words before the final's decode read them again:
    # what the turn's end is judged by
    announced: str | None = None  # the text of the speech_paused partial sent for the current pause
    judged: bool = False  # the current pause was judged (semantic end of turn)
    wait: tuple[float, str] | None = None  # the judgement: the silence that ends the turn, and the rule's name
    complete_probability: float | None = None
    decoding: asyncio.Future | None = None  # done when the decode under way is
    final_decode: asyncio.Task | None = None  # the final's decode, under way or done
    ended_at: float | None = None  # the event loop's time at the end of turn
    real_time: bool = False  # at the end of turn, its audio was coming as it is spoken (not a recording sent at once)
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # set at the end of turn

    @property
    def silence_s(self) -> float:
        """How long the turn has been silent since its last speech."""
        return (self.samples - self.speech_end) / SAMPLE_RATE

    @property
    def whole(self) -> bool:
        """Whether the buffer still holds the whole turn (it is trimmed past `max_buffer_s`)."""
        return self.start_sample == self.first_sample

    def words(self) -> list[Word]:
        """The turn's words so far. Decodes of one turn put together may still end on a phrase said twice (a
        hallucinated copy after the words committed, timed at the window's end): the user sees it once."""
        return cut_loop(self.committed + self.tentative)

    def append(self, audio: np.ndarray) -> None:
        self.buffer.append(audio)
        self.samples += audio.size

    def audio(self) -> np.ndarray:
        if len(self.buffer) > 1:
            self.buffer = [np.concatenate(self.buffer)]
        return self.buffer[0] if self.buffer else np.zeros(0, dtype=np.float32)

    def trim_committed(self, max_samples: int) -> None:
        """Drop buffered audio that only holds committed words, once the buffer grows past `max_samples`."""
        if self.samples <= max_samples or not self.committed:
            return
        cut = int(self.committed[-1].end_s * SAMPLE_RATE) - self.start_sample
        if cut <= 0:
            return
        audio = self.audio()[cut:]
        self.buffer = [audio]
        self.start_sample += cut
        self.samples -= cut
        self.speech_end -= cut
        self.decoded_samples = max(self.decoded_samples - cut, 0)
        self.paused_samples = max(self.paused_samples - cut, 0)
        self.final_samples = max(self.final_samples - cut, 0)


def _text(words: list[Word]) -> str:
    return " ".join(w.text for w in words)


def said_again(committed: list[Word], fresh: list[Word], longest: int = 6) -> int:
    """How many of the fresh words' first ones repeat the committed words' last ones (the longest such run)."""
    for count in range(min(longest, len(committed), len(fresh)), 0, -1):
        if [w.key for w in committed[-count:]] == [w.key for w in fresh[:count]]:
            return count
    return 0


class StreamingRecognizer:
    def __init__(self, backend: AsrBackend, vad: SileroVad, config: RecognizerConfig, decode_lock: asyncio.Lock,
                 judge: TurnEndJudge | None = None):
        self._backend = backend
        self._vad = vad
        self._cfg = config
        self._semantic = config.end_of_turn == "semantic"
        self._judge = judge
        self._to_judge: _Turn | None = None  # a pause to judge before the feeder reads on
        self._lock = decode_lock
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._turns: deque[_Turn] = deque()
        self._wake = asyncio.Event()
        self._position = 0  # samples of the stream run through the VAD
        self._pending = np.zeros(0, dtype=np.float32)
        kept_s = config.preroll_s + config.final_lead_s
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, int(kept_s * SAMPLE_RATE / WINDOW)))
        self._speech_run = 0
        self._turn: _Turn | None = None
        self._turn_count = 0
        self._feeding = True
        self._arrivals: deque[tuple[float, int]] = deque()  # (when, samples) of the chunks of the rate window
        self._catch_up: asyncio.TimerHandle | None = None  # wakes the decoder once the rate window has passed

    async def run(self, chunks: AsyncIterator[np.ndarray]) -> AsyncIterator[Event]:
        """Consume 16 kHz float32 chunks; yield events until the input ends and every turn is final."""
        feeder = asyncio.create_task(self._feed(chunks))
        decoder = asyncio.create_task(self._decode_loop())
        try:
            while (event := await self._events.get()) is not None:
                yield event
            await feeder  # surfaces a bad chunk raised by the feeder
        finally:
            feeder.cancel()
            decoder.cancel()
            if self._catch_up is not None:
                self._catch_up.cancel()

    # -- feeder: VAD and turn cutting ------------------------------------------------------------
    async def _feed(self, chunks: AsyncIterator[np.ndarray]) -> None:
        try:
            async for chunk in self._or_quiet(chunks):
                self._arrivals.append((time.monotonic(), chunk.size))
                self._forget_old_arrivals()
                self._pending = np.concatenate([self._pending, chunk])
                usable = self._pending.size - self._pending.size % WINDOW
                for start in range(0, usable, WINDOW):
                    self._on_window(self._pending[start : start + WINDOW])
                    if self._to_judge is not None:
                        await self._judge_pause(self._to_judge)
                self._pending = self._pending[usable:]
                self._wake.set()
            if self._turn is not None:
                self._end_turn("stream_end")
            elif self._turn_count == 0:
                # The stream held no speech at all: answer with an empty final rather than nothing.
                self._events.put_nowait(Transcript(0, (), 0, True, self._position / SAMPLE_RATE))
        except BaseException:
            self._events.put_nowait(None)
            raise
        finally:
            self._feeding = False
            self._wake.set()

    async def _or_quiet(self, chunks: AsyncIterator[np.ndarray]) -> AsyncIterator[np.ndarray]:
        """The chunks as they come; while a turn is in a pause and the client sends nothing (a muted microphone, a
        client that sends only while someone speaks), the wall clock stands in for the silence that does not come:
        the pause is judged, and the turn ends, when as much time has passed as the silence it waits for."""
        chunks = aiter(chunks)
        next_chunk: asyncio.Future | None = None
        try:
            while True:
                if next_chunk is None:
                    next_chunk = asyncio.ensure_future(anext(chunks))
                done, _ = await asyncio.wait({next_chunk}, timeout=self._quiet_left_s())
                if done:
                    try:
                        chunk = next_chunk.result()
                    except StopAsyncIteration:
                        return
                    next_chunk = None
                    yield chunk
                else:
                    await self._on_quiet()
        finally:
            if next_chunk is not None:
                next_chunk.cancel()

    def _quiet_left_s(self) -> float | None:
        """Wall seconds without audio after which the open turn's pause has lasted its rule; None: no such pause."""
        turn, cfg = self._turn, self._cfg
        if turn is None or turn.samples == turn.speech_end:
            return None
        silence_s = turn.silence_s
        if not self._semantic:
            rule_s = cfg.end_of_turn_s
        elif not turn.judged:
            rule_s = cfg.judge_after_s
        else:
            rule_s = turn.wait[0] if turn.wait is not None else cfg.max_end_of_turn_s
        return max(rule_s - silence_s, 0.0) + cfg.quiet_margin_s

    async def _on_quiet(self) -> None:
        turn = self._turn
        log.info("turn %d: no audio came for its pause's rule (%.2f s of silence heard): the wall clock stands in",
                 turn.index, turn.silence_s)
        if not self._semantic:
            self._end_turn("silence")
        elif not turn.judged:
            turn.judged = True
            await self._judge_pause(turn)
        else:
            self._end_turn(turn.wait[1] if turn.wait is not None else "cap")

    def _on_window(self, window: np.ndarray) -> None:
        cfg = self._cfg
        is_speech = self._vad.speech_probability(window) >= cfg.speech_threshold
        self._position += WINDOW
        turn = self._turn
        if turn is None:
            self._preroll.append(window)
            self._speech_run = self._speech_run + 1 if is_speech else 0
            if self._speech_run * WINDOW >= cfg.min_speech_s * SAMPLE_RATE:
                self._start_turn()
            return
        turn.append(window)
        silence_s = turn.silence_s
        if is_speech:
            turn.speech_end = turn.samples
            if turn.announced is not None:
                self._events.put_nowait(SpeechStarted(turn.index, self._position / SAMPLE_RATE, resumed=True))
            turn.announced = None
            turn.judged, turn.wait = False, None
        elif not self._semantic:
            if silence_s >= cfg.end_of_turn_s:
                self._end_turn("silence")
        elif not turn.judged and silence_s >= cfg.judge_after_s:
            turn.judged = True
            self._to_judge = turn
        elif turn.wait is not None and silence_s >= turn.wait[0]:
            self._end_turn(turn.wait[1])
        elif silence_s >= cfg.max_end_of_turn_s:
            self._end_turn("cap")

    async def _judge_pause(self, turn: _Turn) -> None:
        """Semantic end of turn: the whole turn decoded (unless the pause decode did), and how complete its words
        read."""
        self._to_judge = None
        while turn.decoded_samples < turn.speech_end:
            if turn.decoding is not None:
                await asyncio.shield(turn.decoding)  # the decode under way may cover the pause
            else:
                await self._decode(turn, "pause")
        self._wake.set()  # the decode covers the pause: a speech_paused partial is due
        cfg = self._cfg
        text = _text(turn.pause_words)
        if not text or self._judge is None:
            turn.wait = (cfg.end_of_turn_s, "silence")
            return
        turn.complete_probability, turn.wait = await self._judge_words(text, turn.pause_words[-1])
        if turn.wait[1] == "cap" and self._backend.final_differs:
            # Words that would wait out the cap get a second reading, the final's (beam search over the whole
            # turn, usually under way already): a question misheard in the pause ("Tell me something about the
            # notion.", "Can you recommend a good work?") is often heard right there, and then need not wait.
            if not self._final_ready(turn):
                await self._final_decode(turn)
            second = turn.words()
            if second and _text(second) != text:
                probability, wait = await self._judge_words(_text(second), second[-1], second_reading=True)
                if wait[0] < turn.wait[0]:
                    turn.complete_probability, turn.wait = probability, wait
        if turn.silence_s >= turn.wait[0]:
            self._end_turn(turn.wait[1])

    async def _judge_words(self, text: str, last: Word,
                           second_reading: bool = False) -> tuple[float, tuple[float, str]]:
        """How complete the model reads the words, and the silence after which they end the turn and why."""
        started = time.perf_counter()
        probability = await asyncio.to_thread(self._judge.complete_probability, text)
        metrics.END_OF_TURN_JUDGEMENT.observe(time.perf_counter() - started)
        return probability, self._silence_to_end(text, probability, last.confidence, second_reading)

    def _silence_to_end(self, text: str, probability: float, last_confidence: float,
                        second_reading: bool = False) -> tuple[float, str]:
        """The silence after which a pause ends the turn whose words read `probability` complete, and why. Words
        whose last one the recogniser is unsure of are not trusted to end it: they may be a clause's open end
        misheard as a sentence's ("I was thinking that" read "I was thinking her", "my favourite colour is, um" read
        "my favorite color is foam."), unless the recogniser heard a question: its last word unsure is then more
        likely a misheard name or noun ("what is your favorite season" read "... Siemens?") than a clause cut off.
        On the second reading a question mark counts for nothing: the final's beam search closes a clause cut off
        by a thinking pause as a question ("could you remind me of the" read "Could you remind me of her?")."""
        cfg = self._cfg
        asked = text.rstrip().endswith("?") and not second_reading
        if turn_end.TRAILING_OFF.search(text) or (last_confidence < cfg.sure_above and not asked):
            return cfg.max_end_of_turn_s, "cap"
        if probability >= cfg.complete_above:
            end_s = cfg.second_reading_end_s if second_reading else cfg.complete_end_s
            return min(end_s, cfg.max_end_of_turn_s), "model"
        if probability >= cfg.asked_above and asked:
            return min(cfg.asked_end_s, cfg.max_end_of_turn_s), "model"
        return cfg.max_end_of_turn_s, "cap"

    def _start_turn(self) -> None:
        kept = np.concatenate(list(self._preroll))
        split = max(kept.size - max(int(self._cfg.preroll_s * SAMPLE_RATE / WINDOW), 1) * WINDOW, 0)
        lead, audio = kept[:split], kept[split:]
        start = self._position - audio.size
        turn = _Turn(index=self._turn_count, start_sample=start, first_sample=start, lead=lead)
        turn.append(audio)
        turn.speech_end = turn.samples
        self._turn_count += 1
        self._turn = turn
        self._turns.append(turn)
        speech_at = (self._position - self._speech_run * WINDOW) / SAMPLE_RATE
        self._events.put_nowait(SpeechStarted(turn.index, speech_at))
        self._preroll.clear()

    def _end_turn(self, reason: Literal["silence", "model", "cap", "stream_end"]) -> None:
        turn = self._turn
        turn.ended = True
        turn.ended_at = asyncio.get_running_loop().time()
        turn.real_time = self._ahead_of_time_s() <= self._cfg.ahead_of_time_s
        turn.closed.set()
        log.info("turn %d ended (%s) after %.2f s of audio, %.2f s of it silence; complete probability %s; %s",
                 turn.index, reason, turn.samples / SAMPLE_RATE, turn.silence_s,
                 "-" if turn.complete_probability is None else f"{turn.complete_probability:.3f}",
                 "in real time" if turn.real_time else "faster than real time")
        self._turn = None
        self._speech_run = 0
        self._events.put_nowait(TurnEnded(turn.index, self._position / SAMPLE_RATE, reason, turn.complete_probability))
        self._wake.set()

    def _forget_old_arrivals(self) -> float:
        """Drop the arrivals older than the rate window (on every chunk, so a long stream keeps only a window's
        worth); returns the time it judged by."""
        now = time.monotonic()
        while self._arrivals and self._arrivals[0][0] < now - self._cfg.rate_window_s:
            self._arrivals.popleft()
        return now

    def _ahead_of_time_s(self) -> float:
        """How far the audio of the last rate window runs ahead of the time it took to arrive: about 0 when it
        is sent as it is spoken, seconds when it is sent faster. A window, not the whole stream: audio sent again
        in a burst when a stream is renewed no longer counts once it is a window old."""
        now = self._forget_old_arrivals()
        if len(self._arrivals) < 2:
            return 0.0
        # The oldest chunk's audio was spoken before it arrived; the others had the time since to be spoken.
        later = sum(samples for _, samples in self._arrivals) - self._arrivals[0][1]
        return later / SAMPLE_RATE - (now - self._arrivals[0][0])

    def _pause_decode_now(self) -> bool:
        """Whether a pause is worth decoding now. Audio coming faster than it is spoken holds the decode (the rest
        of the turn is on its way); the decoder looks again a window later, in case nothing more came."""
        if self._ahead_of_time_s() <= self._cfg.ahead_of_time_s:
            return True
        if self._catch_up is not None:
            self._catch_up.cancel()
        self._catch_up = asyncio.get_running_loop().call_later(self._cfg.rate_window_s, self._wake.set)
        return False

    # -- decoder: partials and finals ------------------------------------------------------------
    async def _decode_loop(self) -> None:
        cfg = self._cfg
        interval = int(cfg.partial_interval_s * SAMPLE_RATE)
        pause = int(cfg.pause_s * SAMPLE_RATE)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._turns:
                turn = self._turns[0]
                if turn.ended:
                    if not self._final_ready(turn):
                        await self._final_decode(turn)
                    metrics.FINALS.labels("final" if turn.final_samples >= turn.speech_end else "pause").inc()
                    self._emit(turn, final=True)
                    self._turns.popleft()
                    continue
                paused = turn.samples - turn.speech_end >= pause
                covered = turn.paused_samples >= turn.speech_end
                due = cfg.partials and not (paused and covered) and turn.samples - turn.decoded_samples >= interval
                if due and not paused:
                    await self._decode(turn, "partial")
                    self._emit(turn, final=False)
                elif due or (paused and not covered and self._pause_decode_now()):
                    await self._decode(turn, "pause")
                    self._wake.set()  # the final's decode is next, while the pause lasts
                elif paused and not self._final_ready(turn) and self._pause_decode_now():
                    # The pause's words go out first (the end-of-turn judgement may have decoded them): the final's
                    # decode takes longer, and a reply to start or a paused one to resume waits on them.
                    self._announce_pause(turn, paused)
                    await self._final_decode(turn)
                self._announce_pause(turn, paused)
                break
            if not self._feeding and not self._turns:
                self._events.put_nowait(None)
                return

    def _final_ready(self, turn: _Turn) -> bool:
        """Whether the turn's words so far are its final's: a final's decode covers all speech, or a pause's does
        and the backend's final would read no more."""
        if turn.final_samples >= turn.speech_end:
            return True
        return not self._backend.final_differs and turn.paused_samples >= turn.speech_end

    def _announce_pause(self, turn: _Turn, paused: bool) -> None:
        """A partial that covers all speech once the speaker paused is marked, again when the final's decode says
        otherwise."""
        words = _text(turn.words())
        if self._cfg.partials and paused and turn.paused_samples >= turn.speech_end and turn.announced != words:
            self._emit(turn, final=False, paused=True)
            turn.announced = words

    async def _final_decode(self, turn: _Turn) -> None:
        """Decodes the turn with the final's effort, or goes on waiting for the decode under way. Where a pause's
        decode covers the speech and the turn was spoken in real time, the wait ends `final_late_s` after the end
        of turn at the latest: the decode goes on, its words too late for this turn, whose final the pause's words
        are. A recording sent faster than spoken waits for it (its pause was decoded for the end-of-turn judgement,
        not while a speaker paused)."""
        if turn.final_decode is None or turn.final_decode.done():
            turn.final_decode = asyncio.ensure_future(self._decode(turn, "final"))
        decode = turn.final_decode
        if turn.paused_samples < turn.speech_end:
            await asyncio.shield(decode)  # nothing else to give
            return
        if not turn.ended:
            closed = asyncio.ensure_future(turn.closed.wait())
            try:
                await asyncio.wait({decode, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
        if not decode.done() and turn.real_time:
            late = turn.ended_at + self._cfg.final_late_s - asyncio.get_running_loop().time()
            await asyncio.wait({decode}, timeout=max(late, 0.0))
        elif not decode.done():
            await asyncio.shield(decode)
        if decode.done():
            decode.result()  # a decode that failed fails the stream, as any decode does

    async def _decode(self, turn: _Turn, effort: Effort) -> None:
        done = turn.decoding = asyncio.get_running_loop().create_future()
        try:
            await self._decode_words(turn, effort)
        finally:
            done.set_result(None)
            if turn.decoding is done:
                turn.decoding = None

    async def _decode_words(self, turn: _Turn, effort: Effort) -> None:
        turn.trim_committed(int(self._cfg.max_buffer_s * SAMPLE_RATE))
        audio = turn.audio()
        lead = turn.lead if effort == "final" and turn.whole else turn.lead[:0]
        prompt = " ".join(w.text for w in turn.committed if w.end_s * SAMPLE_RATE <= turn.start_sample)
        async with self._lock:
            words = await asyncio.to_thread(
                self._backend.transcribe, np.concatenate([lead, audio]), prompt[-400:], self._cfg.language, effort,
                self._cfg.vocabulary,
            )
        if not words and effort == "partial":
            return  # a quick decode gave up: leave the turn as it was, a later decode will cover it
        offset = (turn.start_sample - lead.size) / SAMPLE_RATE
        words = [Word(w.text, w.start_s + offset, w.end_s + offset, w.confidence) for w in words]
        turn.decoded_samples = audio.size
        if effort == "final" and turn.whole:
            # The whole turn, read with the final's effort: its words stand (the last one open, should speech go on),
            # in place of those the partials fixed on shorter windows.
            turn.committed, turn.tentative, turn.previous = words[:-1], words[-1:], words[-1:]
        else:
            self._agree(turn, words)
        if effort != "final" or not turn.pause_words:
            turn.pause_words = turn.words()
        if effort != "partial":
            turn.paused_samples = audio.size
        if effort == "final":
            turn.final_samples = audio.size

    @staticmethod
    def _agree(turn: _Turn, words: list[Word]) -> None:
        """LocalAgreement: the fresh words two decodes in a row agree on are committed."""
        # Only words after the committed ones are open to revision. Whisper's word timings on a short window can
        # put words already committed after the boundary (the whole question aligned over its last second): a
        # head of the fresh words that says the committed tail again is that, not new speech.
        boundary = turn.committed[-1].end_s - 0.05 if turn.committed else -1.0
        fresh = [w for w in words if w.start_s >= boundary]
        fresh = fresh[said_again(turn.committed, fresh):]
        agreed = 0
        for old, new in zip(turn.previous, fresh):
            if old.key != new.key:
                break
            agreed += 1
        turn.committed.extend(fresh[:agreed])
        turn.tentative = fresh[agreed:]
        turn.previous = fresh[agreed:]

    def _emit(self, turn: _Turn, final: bool, paused: bool = False) -> None:
        words = tuple(turn.words())
        committed = len(words) if final else min(len(turn.committed), len(words))
        processed = (turn.start_sample + turn.decoded_samples) / SAMPLE_RATE
        self._events.put_nowait(Transcript(turn.index, words, committed, final, processed, paused))
