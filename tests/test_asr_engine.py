"""The streaming recogniser's decode timing, with the real VAD and a backend that only counts its decodes."""

import asyncio
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from core.asr.backends.base_backend import Word
from core.asr.vad import SileroVad
from services.asr.engine import RecognizerConfig, StreamingRecognizer, Transcript, TurnEnded
from tests.voices import RATE, UNFAMILIAR, say

pytestmark = pytest.mark.unit

CHUNK = RATE // 10


class CountingBackend:
    sample_rate = RATE
    name = "counting"
    final_differs = False

    def __init__(self):
        self.decoded_at: list[float] = []

    def transcribe(self, audio, prompt, language, effort="final", vocabulary=()):
        self.decoded_at.append(time.monotonic())
        time.sleep(0.05)
        return [Word("words", 0.0, audio.size / RATE, 0.9)]


def two_phrases_with_a_short_pause() -> np.ndarray:
    first, second = say("Hello there.", UNFAMILIAR[0]), say("How are you?", UNFAMILIAR[0])
    pause = np.zeros(int(0.3 * RATE), np.float32)  # past the 0.2 s pause decode, short of the 0.5 s end of turn
    return np.concatenate([first.samples[: int(first.voiced_end_s * RATE)], pause, second.samples[RATE // 4 :],
                           np.zeros(RATE, np.float32)])


class ScriptedBackend(CountingBackend):
    """Says each of `script`'s hypotheses in turn (the last one again once they run out)."""

    def __init__(self, script: list[list[Word]]):
        super().__init__()
        self.script = script

    def transcribe(self, audio, prompt, language, effort="final", vocabulary=()):
        super().transcribe(audio, prompt, language, effort)
        return self.script[min(len(self.decoded_at), len(self.script)) - 1]


async def recognise(audio: np.ndarray, real_time: bool, burst_s: float = 0.0, backend=None, judge=None, **config):
    """Events and decode times for `audio` sent in 100 ms chunks, in real time or at once; with `burst_s`, that
    much of its start comes at once first (a renewed stream's audio sent again)."""
    backend = backend or CountingBackend()
    recogniser = StreamingRecognizer(backend, SileroVad(SileroVad.load_session()),
                                     RecognizerConfig(**{"partials": False, **config}), asyncio.Lock(), judge)

    async def chunks():
        for start in range(0, audio.size, CHUNK):
            await asyncio.sleep(CHUNK / RATE if real_time and start >= burst_s * RATE else 0)
            yield audio[start : start + CHUNK]

    events = [(event, time.monotonic()) async for event in recogniser.run(chunks())]
    return backend.decoded_at, events


async def test_a_recording_sent_at_once_is_decoded_once_per_turn():
    decoded_at, events = await recognise(two_phrases_with_a_short_pause(), real_time=False)
    finals = [e for e, _ in events if isinstance(e, Transcript) and e.is_final]
    assert len(finals) == 1 and finals[0].text == "words"
    assert len(decoded_at) == 1, "the pause inside the turn was decoded although the rest of it had already come"


async def test_speech_in_real_time_is_decoded_in_the_pause_before_the_end_of_turn():
    decoded_at, events = await recognise(two_phrases_with_a_short_pause(), real_time=True)
    (ended_at,) = [t for e, t in events if isinstance(e, TurnEnded)]
    assert decoded_at and decoded_at[-1] < ended_at, "the final was not decoded ahead of the end of turn"


async def test_a_burst_sent_again_at_the_start_does_not_hold_the_pause_decode_of_speech_that_follows():
    audio = np.concatenate([np.zeros(int(1.5 * RATE), np.float32), two_phrases_with_a_short_pause()])
    decoded_at, events = await recognise(audio, real_time=True, burst_s=2.0)
    (ended_at,) = [t for e, t in events if isinstance(e, TurnEnded)]
    assert decoded_at and decoded_at[-1] < ended_at, "the final was not decoded ahead of the end of turn"


def words(text: str, start_s: float, step_s: float, last_confidence: float = 0.9) -> list[Word]:
    said = text.split()
    return [Word(w, start_s + i * step_s, start_s + (i + 1) * step_s, 0.9 if i < len(said) - 1 else last_confidence)
            for i, w in enumerate(said)]


async def test_committed_words_a_later_decode_times_after_them_are_not_said_twice():
    """Whisper's word timings on a short window sometimes put the whole question over its last second: the words
    already committed then came back after the commit boundary, and the final read "what is your name what is
    your name" (seen on one machine's timing, caribbean-male-fast at 3x)."""
    question = say("What is your name?", UNFAMILIAR[4])
    audio = np.concatenate([question.samples, np.zeros(RATE, np.float32)])
    late = question.voiced_end_s + 0.1  # every word of the last decode timed after the committed ones
    backend = ScriptedBackend([words("what is your", 0.3, 0.2), words("what is your name", 0.3, 0.2),
                               words("what is your name", late, 0.05)])
    _, events = await recognise(audio, real_time=True, backend=backend, partials=True, partial_interval_s=0.2)
    finals = [e for e, _ in events if isinstance(e, Transcript) and e.is_final]
    assert len(backend.decoded_at) >= 3, "the scripted decodes did not all run"
    assert [f.text for f in finals] == ["what is your name"]


async def test_a_copy_said_after_the_committed_words_is_cut_from_the_final():
    """A decode that times the committed last word just past the boundary and then says the question again at the
    window's end (zero-length words: a hallucinated copy): the head that repeats the committed tail is only that
    one word, so the copy got through, and the final read "what is your name what is your name"
    (caribbean-male-fast at 1x, with every voice at once)."""
    question = say("What is your name?", UNFAMILIAR[4])
    audio = np.concatenate([question.samples, np.zeros(RATE, np.float32)])
    end = question.voiced_end_s
    copy = [Word(w, end + 0.2, end + 0.2, 0.5) for w in "what is your name".split()]
    backend = ScriptedBackend([words("what is your name", 0.3, 0.2), words("what is your name", 0.3, 0.2),
                               words("what is your name", 0.3, 0.2)[:3] + [Word("name", 1.06, 1.1, 0.9)] + copy])
    _, events = await recognise(audio, real_time=True, backend=backend, partials=True, partial_interval_s=0.2)
    finals = [e for e, _ in events if isinstance(e, Transcript) and e.is_final]
    assert len(backend.decoded_at) >= 3, "the scripted decodes did not all run"
    assert [f.text for f in finals] == ["what is your name"]


def finals_counted(decode: str) -> float:
    """The recogniser's final transcripts so far whose words are `decode`'s, as its metrics tell an operator."""
    return REGISTRY.get_sample_value("avatar_asr_finals_total", {"decode": decode}) or 0.0


class ByEffortBackend(CountingBackend):
    """Hears `heard[effort]`: what a quick partial, a pause's decode and a final's decode each make of the turn."""

    final_differs = True

    def __init__(self, heard: dict[str, str]):
        super().__init__()
        self.heard = heard
        self.efforts: list[str] = []

    def transcribe(self, audio, prompt, language, effort="final", vocabulary=()):
        super().transcribe(audio, prompt, language, effort)
        self.efforts.append(effort)
        return words(self.heard[effort], 0.3, 0.2)


@pytest.mark.parametrize("end_of_turn", ["silence", "semantic"])
async def test_the_final_is_the_whole_turn_read_with_the_finals_effort_and_the_end_is_judged_by_the_pauses(
        end_of_turn):
    """Quick partials commit words fixed on short windows; at the pause the whole turn is decoded (new words join
    the committed ones: the words a turn's end is judged by, a partial marked speech_paused), then read again with
    the final's effort (beam search), which corrects the committed words: a second speech_paused partial says so
    before the final does, so a reply started on it is kept. The judgement reads the pause's words (beam search
    rounds a sentence left open into a whole one) and waits for no decode."""
    question = say("What is your name?", UNFAMILIAR[0])
    audio = np.concatenate([question.samples, np.zeros(3 * RATE, np.float32)])
    backend = ByEffortBackend({"partial": "what is your game", "pause": "what is your same",
                               "final": "what is your name"})
    judge = FixedJudge(0.9)
    counted = finals_counted("final")
    _, events = await recognise(audio, real_time=True, backend=backend, judge=judge, partials=True,
                                partial_interval_s=0.2, end_of_turn=end_of_turn)
    assert finals_counted("final") == counted + 1
    transcripts = [e for e, _ in events if isinstance(e, Transcript)]
    assert any(t.text == "what is your game" and t.committed >= 3 for t in transcripts if not t.is_final)
    assert [t.text for t in transcripts if t.speech_paused] == ["what is your game", "what is your name"]
    assert [t.text for t in transcripts if t.is_final] == ["what is your name"]
    assert backend.efforts.count("pause") == 1 and backend.efforts.count("final") == 1
    assert judge.read == (["what is your game"] if end_of_turn == "semantic" else [])


class SlowFinalBackend(ByEffortBackend):
    """Its final's decode takes `final_s`: a long turn's beam search on a busy machine."""

    def __init__(self, heard: dict[str, str], final_s: float):
        super().__init__(heard)
        self.final_s = final_s
        self.finals_done_at: list[float] = []

    def transcribe(self, audio, prompt, language, effort="final", vocabulary=()):
        heard = super().transcribe(audio, prompt, language, effort)
        if effort == "final":
            time.sleep(self.final_s)
            self.finals_done_at.append(time.monotonic())
        return heard


async def test_a_final_decode_that_would_hold_the_reply_gives_way_to_the_pauses_words():
    """Spoken in real time, the turn's end comes before the final's slow decode is done: the final is the pause's
    words (the metrics count it so), sent while that decode still runs; the next turn is recognised as usual."""
    question = say("What is your name?", UNFAMILIAR[0])
    audio = np.concatenate([question.samples, np.zeros(RATE, np.float32), question.samples,
                            np.zeros(3 * RATE, np.float32)])
    backend = SlowFinalBackend({"partial": "what is your game", "pause": "what is your same",
                                "final": "what is your name"}, final_s=1.5)
    counted = finals_counted("pause")
    _, events = await recognise(audio, real_time=True, backend=backend, judge=FixedJudge(0.9), partials=True,
                                partial_interval_s=0.2, end_of_turn="semantic")
    assert finals_counted("pause") == counted + 2
    finals = [(e, t) for e, t in events if isinstance(e, Transcript) and e.is_final]
    assert [f.text for f, _ in finals] == ["what is your game", "what is your game"]
    assert finals[0][1] < backend.finals_done_at[0], "the final waited for the slow decode"


@pytest.mark.parametrize("end_of_turn", ["silence", "semantic"])
async def test_a_recording_waits_for_the_finals_decode_however_long_it_takes(end_of_turn):
    """Sent at once, a turn's pause is decoded only where the end of turn is judged on its words: the final still
    reads the whole turn with the final's effort."""
    question = say("What is your name?", UNFAMILIAR[0])
    audio = np.concatenate([question.samples, np.zeros(RATE, np.float32)])
    backend = SlowFinalBackend({"partial": "what is your game", "pause": "what is your same",
                                "final": "what is your name"}, final_s=1.0)
    _, events = await recognise(audio, real_time=False, backend=backend, judge=FixedJudge(0.9), partials=True,
                                end_of_turn=end_of_turn)
    assert [e.text for e, _ in events if isinstance(e, Transcript) and e.is_final] == ["what is your name"]


class FixedJudge:
    """An end-of-turn model that reads every text as `probability` complete, and keeps what it read."""

    def __init__(self, probability: float):
        self.probability = probability
        self.read: list[str] = []

    def complete_probability(self, text):
        self.read.append(text)
        return self.probability


class OpenEndJudge(FixedJudge):
    """Reads words that end on "to" as unfinished."""

    def complete_probability(self, text):
        super().complete_probability(text)
        return 0.0 if text.rstrip(".").endswith("to") else 0.9


async def turn_ends(audio: np.ndarray, judge: FixedJudge | None, backend=None, **config) -> list[TurnEnded]:
    recogniser = StreamingRecognizer(backend or CountingBackend(), SileroVad(SileroVad.load_session()),
                                     RecognizerConfig(**{"partials": False, "end_of_turn": "semantic", **config}),
                                     asyncio.Lock(), judge)

    async def chunks():
        for start in range(0, audio.size, CHUNK):
            yield audio[start : start + CHUNK]

    return [e async for e in recogniser.run(chunks()) if isinstance(e, TurnEnded)]


def phrase_pause_phrase(pause_s: float) -> tuple[np.ndarray, float]:
    """Two phrases with a pause between them, and where the first one's voice ends."""
    first, second = say("I would like to", UNFAMILIAR[1]), say("book a table.", UNFAMILIAR[1])
    head = first.samples[: int(first.voiced_end_s * RATE)]
    return np.concatenate([head, np.zeros(int(pause_s * RATE), np.float32), second.samples,
                           np.zeros(3 * RATE, np.float32)]), first.voiced_end_s


async def test_words_that_read_complete_end_the_turn_after_a_short_pause():
    audio, voiced_end_s = phrase_pause_phrase(0.9)
    judge = FixedJudge(0.9)
    ends = await turn_ends(audio, judge)
    assert [e.reason for e in ends] == ["model", "model"]
    # The first phrase's turn ends once judged whole (+ a VAD window or two) after its voice, not after the 2.5 s cap.
    assert ends[0].offset_s - voiced_end_s < RecognizerConfig.complete_end_s + 0.15
    assert ends[0].complete_probability == 0.9 and judge.read == ["words", "words"]


async def test_words_left_open_wait_through_a_thinking_pause_up_to_the_cap():
    audio, _ = phrase_pause_phrase(1.2)
    backend = ScriptedBackend([words("I would like to", 0.3, 0.2), words("I would like to book a table.", 0.3, 0.2)])
    judge = OpenEndJudge(0.0)
    ends = await turn_ends(audio, judge, backend, max_end_of_turn_s=2.0)
    assert [e.reason for e in ends] == ["model"], "a 1.2 s pause after 'I would like to' split the turn"
    assert judge.read == ["I would like to", "I would like to book a table."]
    ends = await turn_ends(audio, FixedJudge(0.0), max_end_of_turn_s=2.0)
    assert [e.reason for e in ends] == ["cap"]


@pytest.mark.parametrize("heard, probability, last_confidence, waits", [
    ("What is your name?", 0.5, 0.9, "complete_end_s"),  # whole
    ("Can you help me plan a trip?", 0.001, 0.9, "asked_end_s"),  # a question only by the recogniser's mark
    ("Can you help me plan a trip", 0.001, 0.9, "max_end_of_turn_s"),  # the same words unmarked: left open
    ("My favourite colour is...", 0.5, 0.9, "max_end_of_turn_s"),  # the recogniser heard the voice trail off
    ("I was thinking her.", 0.5, 0.25, "max_end_of_turn_s"),  # whole, but its last word may be misheard ("that")
    ("What is your favorite Siemens?", 0.5, 0.25, "complete_end_s"),  # a question heard, its last word unsure
])
async def test_how_whole_the_words_read_says_how_long_a_pause_ends_the_turn_after(heard, probability,
                                                                                    last_confidence, waits):
    question = say("What is your name?", UNFAMILIAR[2])
    head = question.samples[: int(question.voiced_end_s * RATE)]
    audio = np.concatenate([head, np.zeros(4 * RATE, np.float32)])
    config = RecognizerConfig(max_end_of_turn_s=2.0)
    ends = await turn_ends(audio, FixedJudge(probability), ScriptedBackend([words(heard, 0.3, 0.1, last_confidence)]),
                           max_end_of_turn_s=2.0)
    silence_s = ends[0].offset_s - question.voiced_end_s
    wanted_s = getattr(config, waits)
    assert wanted_s <= silence_s < wanted_s + 0.15  # VAD's window or two past the voice
    assert ends[0].reason == ("cap" if waits == "max_end_of_turn_s" else "model")


class ReadingJudge(FixedJudge):
    """Reads each text as `probabilities` says."""

    def __init__(self, probabilities: dict[str, float]):
        super().__init__(0.0)
        self.probabilities = probabilities

    def complete_probability(self, text):
        super().complete_probability(text)
        return self.probabilities[text]


@pytest.mark.parametrize("final, probability, waits", [
    ("tell me something about the ocean.", 0.5, "second_reading_end_s"),  # heard right by the beams: whole
    ("could you remind me of her?", 0.005, "max_end_of_turn_s"),  # a clause the beams closed with a "?"
    ("tell me something about the notion.", 0.0007, "max_end_of_turn_s"),  # read the same: nothing new
])
async def test_words_that_would_wait_out_the_cap_are_read_again_by_the_finals_decode(final, probability, waits):
    """The pause's words read as a sentence left open (a question misheard: "about the notion."); the final's
    beam decode of the turn is read too, and ends the turn sooner where it reads whole, never on its "?" alone."""
    question = say("Tell me something about the ocean.", UNFAMILIAR[2])
    audio = np.concatenate([question.samples[: int(question.voiced_end_s * RATE)], np.zeros(4 * RATE, np.float32)])
    heard = "tell me something about the notion."
    judge = ReadingJudge({heard: 0.0007, final: probability})
    backend = ByEffortBackend({"partial": heard, "pause": heard, "final": final})
    ends = await turn_ends(audio, judge, backend, max_end_of_turn_s=2.0, second_reading_end_s=1.0)
    silence_s = ends[0].offset_s - question.voiced_end_s
    wanted_s = getattr(RecognizerConfig(max_end_of_turn_s=2.0, second_reading_end_s=1.0), waits)
    assert wanted_s <= silence_s < wanted_s + 0.15
    assert ends[0].reason == ("cap" if waits == "max_end_of_turn_s" else "model")
    assert judge.read == ([heard] if final == heard else [heard, final])


async def test_without_the_model_the_silence_rule_ends_the_turn():
    audio, voiced_end_s = phrase_pause_phrase(0.9)
    ends = await turn_ends(audio, None, end_of_turn_s=0.5)
    assert [e.reason for e in ends] == ["silence", "silence"]
    assert ends[0].offset_s - voiced_end_s >= 0.5


async def test_the_silence_rule_needs_no_judgement():
    audio, voiced_end_s = phrase_pause_phrase(0.9)
    judge = FixedJudge(0.9)
    ends = await turn_ends(audio, judge, end_of_turn="silence", end_of_turn_s=0.5)
    assert [e.reason for e in ends] == ["silence", "silence"] and not judge.read
    assert ends[0].offset_s - voiced_end_s >= 0.5


@pytest.mark.parametrize("probability, reason", [(0.9, "model"), (0.0, "cap")])
async def test_a_client_that_stops_sending_in_a_pause_still_has_its_turn_ended(probability, reason):
    """The stream stays open but no audio comes after a short pause (a client that sends only while someone
    speaks): the wall clock stands in for the silence, so the turn is judged and ends instead of waiting forever."""
    question = say("What is your name?", UNFAMILIAR[2])
    audio = question.samples[: int((question.voiced_end_s + 0.1) * RATE)]
    recogniser = StreamingRecognizer(CountingBackend(), SileroVad(SileroVad.load_session()),
                                     RecognizerConfig(partials=False, end_of_turn="semantic", max_end_of_turn_s=1.0),
                                     asyncio.Lock(), FixedJudge(probability))
    still_open = asyncio.Event()

    async def chunks():
        for start in range(0, audio.size, CHUNK):
            yield audio[start : start + CHUNK]
        await still_open.wait()  # the client neither sends nor closes

    async def first_end():
        async for event in recogniser.run(chunks()):
            if isinstance(event, TurnEnded):
                return event

    started = time.monotonic()
    ended = await asyncio.wait_for(first_end(), 10)
    assert ended.reason == reason
    assert time.monotonic() - started < 1.0 + 2 * RecognizerConfig.quiet_margin_s + 1.0
