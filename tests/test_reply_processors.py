"""The reply's processors: what each makes reaches the next, a new step is one more entry, the first failure ends
the run with its error, and closing the run (a barge-in) stops every processor, the text engine's call included."""

import asyncio
import contextlib
import re

import numpy as np
import pytest

from services.gateway import reply_processors
from services.gateway.playback import Playback
from services.gateway.reply_processors import AudioOnly, ReplyContext, VideoLost
from services.gateway.stages import BYTES_PER_S, Frame, ReplyRequest, SpeechChunk, StageFailed, TurnMeta
from tests.fake_stages import WORD_S, FakeAnimator, FakeTextEngine, fake_stages

pytestmark = pytest.mark.unit

ANSWER = "Sure. The sea is wide and deep."


def context() -> ReplyContext:
    return ReplyContext(ReplyRequest("Tell me about the sea.", [], "default", TurnMeta("s", 0)))


async def made(processors, source=None, tap=None) -> list:
    async with contextlib.aclosing(reply_processors.run(processors, context(), source, tap)) as items:
        return [item async for item in items]


class Louder:
    """A step of our own between speech and animation: every chunk twice as loud."""

    name = "louder"

    async def process(self, items, reply):
        async for chunk in items:
            pcm = (np.frombuffer(chunk.pcm, np.int16).astype(np.int32) * 2).clip(-32768, 32767).astype(np.int16)
            yield SpeechChunk(pcm.tobytes(), chunk.text, chunk.rate)


class Tone:
    """Speech that is a tone (the fakes' speech is silence), so a step that changes the audio shows."""

    name = "speech"

    async def process(self, items, reply):
        async for delta in items:
            if isinstance(delta, str):
                samples = int(16000 * WORD_S * len(delta.split()))
                yield SpeechChunk((np.full(samples, 1000, np.int16)).tobytes(), delta.strip())


async def test_the_answer_is_spoken_and_animated_with_all_its_audio_in_frames():
    stages = fake_stages(llm=FakeTextEngine(ANSWER))
    seen: dict[str, list] = {}
    frames = await made(reply_processors.reply_processors(stages), tap=lambda name, item: seen.setdefault(name, [])
                        .append(item))
    assert "".join(seen["text"]) == ANSWER
    spoken = sum(len(chunk.pcm) for chunk in seen["speech"])
    assert spoken == int(len(ANSWER.split()) * WORD_S * BYTES_PER_S)
    assert all(isinstance(f, Frame) for f in frames) and sum(len(f.pcm) for f in frames) == spoken


async def test_a_new_step_is_one_more_entry_and_the_rest_api_part_runs_it_too():
    stages = fake_stages(llm=FakeTextEngine(ANSWER))
    text, _, animation = reply_processors.reply_processors(stages)
    frames = await made([text, Tone(), Louder(), animation])
    levels = {int(np.frombuffer(f.pcm, np.int16).max()) for f in frames}
    assert levels == {2000}, "the audio animated did not pass through the new step"
    # REST speech runs the part from speech on, up to (not into) animation.
    chunks = await made(reply_processors.part([text, Tone(), Louder(), animation], "speech", "louder"),
                        source=aiter_of(["Hello there."]))
    assert {int(np.frombuffer(c.pcm, np.int16).max()) for c in chunks} == {2000}


async def aiter_of(items):
    for item in items:
        yield item


async def test_a_failing_text_engine_ends_the_run_with_its_error():
    stages = fake_stages(llm=FakeTextEngine(ANSWER, fail_after_words=3))
    with pytest.raises(StageFailed, match="the model crashed"):
        await made(reply_processors.reply_processors(stages))


async def test_when_animation_fails_the_rest_comes_as_audio_only_and_no_audio_is_lost():
    stages = fake_stages(llm=FakeTextEngine(ANSWER), sda=FakeAnimator(fail_after_frames=7))
    items = await made(reply_processors.reply_processors(stages))
    lost = [i for i, item in enumerate(items) if isinstance(item, VideoLost)]
    assert lost == [7] and all(isinstance(item, AudioOnly) for item in items[8:])
    frames_s = sum(len(f.pcm) for f in items[:7]) / BYTES_PER_S
    assert items[8].position_s == pytest.approx(frames_s)
    heard = sum(len(f.pcm) for f in items[:7]) + sum(len(a.pcm) for a in items[8:])
    assert heard == int(len(ANSWER.split()) * WORD_S * BYTES_PER_S)


async def test_closing_the_run_stops_every_processor_and_the_text_engine_call():
    engine = FakeTextEngine("one two three four five six seven eight nine ten", word_delay_s=0.05)
    run = reply_processors.run(reply_processors.reply_processors(fake_stages(llm=engine)), context())
    first = await anext(run)
    assert isinstance(first, Frame)
    await run.aclose()
    await asyncio.sleep(0)
    assert engine.cancelled == 1
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("reply-")]


class EagerSpeech:
    """Speech as the service makes it: it takes all the text that comes as it comes, and speaks a sentence at a
    time, each taking `render_s` to make."""

    name = "speech"

    def __init__(self, render_s: float):
        self.render_s = render_s
        self.given = ""

    async def process(self, items, reply):
        sentences: asyncio.Queue = asyncio.Queue()

        async def read():
            pending = ""
            async for delta in items:
                if isinstance(delta, str):
                    self.given += delta
                    pending += delta
                    while match := re.search(r"[.!?]\s", pending):
                        sentences.put_nowait(pending[: match.end()].strip())
                        pending = pending[match.end():]
            sentences.put_nowait(pending.strip())
            sentences.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (sentence := await sentences.get()) is not None:
                await asyncio.sleep(self.render_s)
                yield SpeechChunk(b"\0\0" * int(16000 * WORD_S * len(sentence.split())), sentence)
        finally:
            reader.cancel()


async def test_paced_speech_runs_only_a_few_seconds_ahead_of_the_listener():
    """A long answer (20 sentences, 24 s of speech) written at once, for a listener who has heard nothing yet:
    speech synthesis is given text up to the lead, not the whole answer (it would speak it all as fast as the CPU
    allows), and never half a sentence; as the listener hears on, the rest is given and made."""
    heard = {"s": 0.0}
    playback = Playback()  # nothing sent yet: nothing heard
    sentence = "The sea is wide and deep."
    stages = fake_stages(llm=FakeTextEngine(" ".join([sentence] * 20)))
    text, _, animation = reply_processors.reply_processors(stages)
    speech = EagerSpeech(render_s=0.05)
    pacing = reply_processors.Paced(lambda given: playback.lead_s(given) - heard["s"], lead_s=3.0,
                                    ahead=lambda: playback.ahead_s() - heard["s"], made=lambda: playback.spoken_s,
                                    poll_s=0.01)

    def tap(name, item):
        if name == "speech":
            playback.spoken(len(item.pcm) / BYTES_PER_S, item.text)

    run = asyncio.create_task(made([text, pacing, speech, animation], tap=tap))
    await asyncio.sleep(0.5)
    given = speech.given.strip()
    assert given.endswith(".") and len(given) <= 4 * len(sentence) + 3, f"given to speech: {given!r}"
    assert 3.0 <= playback.ahead_s() <= 3.0 + 6 * WORD_S, f"{playback.ahead_s()} s made for a listener who heard nothing"
    heard["s"] = 100.0  # the listener has heard it all
    frames = await asyncio.wait_for(run, 5)
    shown_s = sum(len(f.pcm) for f in frames) / BYTES_PER_S
    assert playback.ahead_s() == pytest.approx(20 * 6 * WORD_S) and shown_s == pytest.approx(playback.ahead_s())


async def test_a_sentence_that_runs_on_past_the_longest_clause_is_given_whole_before_the_listener_runs_dry():
    """Pacing holds a sentence that runs on and on between two words; speech synthesis, waiting for the sentence's
    end to speak it, begins none of it. The held text must not wait for the letters it holds to be spoken (they
    never would be, and the reply stood still until its call's deadline): once the speech made is nearly all heard,
    the text goes on."""
    heard = {"s": 0.0}
    playback = Playback()
    run_on = " ".join(["and the little boat sailed on past the rocks"] * 12) + "."
    stages = fake_stages(llm=FakeTextEngine("Sure. " + run_on + " The end."))
    text, _, animation = reply_processors.reply_processors(stages)
    speech = EagerSpeech(render_s=0.01)
    pacing = reply_processors.Paced(lambda given: playback.lead_s(given) - min(heard["s"], playback.ahead_s()),
                                    lead_s=3.0, ahead=lambda: playback.ahead_s() - heard["s"],
                                    made=lambda: playback.spoken_s, poll_s=0.01)

    def tap(name, item):
        if name == "speech":
            playback.spoken(len(item.pcm) / BYTES_PER_S, item.text)

    run = asyncio.create_task(made([text, pacing, speech, animation], tap=tap))
    await asyncio.sleep(0.3)
    assert "past the rocks" in speech.given and not speech.given.rstrip().endswith("end.")
    heard["s"] = 100.0  # the listener heard all that was made
    frames = await asyncio.wait_for(run, 5)
    assert sum(len(f.pcm) for f in frames) / BYTES_PER_S == pytest.approx((1 + 12 * 9 + 2) * WORD_S)


async def test_animation_is_given_speech_only_a_cushion_ahead_of_the_listener():
    """Speech made far ahead (the whole answer at once): animation is given the audio up to its lead ahead of what
    the listener has heard, not all of it (it would draw every frame as fast as the CPU allows, taking the CPU
    from a reply just begun), and the rest as the listener hears on."""
    heard = {"s": 0.0}
    stages = fake_stages(llm=FakeTextEngine(" ".join(["word"] * 40)))
    text, speech, animation = reply_processors.reply_processors(stages)
    holding = reply_processors.AnimationPaced(lambda: heard["s"], 1.0, lambda: False, poll_s=0.01)
    spoken, shown = [], []

    def tap(name, item):
        (spoken if name == "speech" else shown if name == "animation" else []).append(item)

    run = asyncio.create_task(made([text, speech, holding, animation], tap=tap))
    await asyncio.sleep(0.3)
    given_s = sum(len(f.pcm) for f in shown) / BYTES_PER_S
    assert len(spoken) == 40 and 1.0 <= given_s <= 1.0 + 2 * WORD_S, f"{given_s} s animated, nothing heard"
    heard["s"] = 2.0
    await asyncio.sleep(0.3)
    given_s = sum(len(f.pcm) for f in shown) / BYTES_PER_S
    assert 3.0 <= given_s <= 3.0 + 2 * WORD_S, f"{given_s} s animated, 2 s heard"
    heard["s"] = 100.0
    frames = await asyncio.wait_for(run, 5)
    assert sum(len(f.pcm) for f in frames) == pytest.approx(40 * WORD_S * BYTES_PER_S, abs=2)


async def test_while_the_listener_is_paused_no_more_is_spoken_or_animated_and_then_all_of_it_is():
    """Speech began over the reply: the listener's playback is paused until the recogniser decides, and the reply
    waits with it (what was in hand is finished), leaving the CPU to the recogniser; resumed, it is all made."""
    paused = {"now": False}
    spoken, shown = [], []
    stages = fake_stages(llm=FakeTextEngine(" ".join(["word"] * 40), word_delay_s=0.01))
    text, speech, animation = reply_processors.reply_processors(stages)
    pacing = reply_processors.Paced(lambda _: 0.0, lead_s=100.0, ahead=lambda: 0.0, made=lambda: 0.0,
                                    paused=lambda: paused["now"], poll_s=0.01)
    holding = reply_processors.AnimationPaced(lambda: 0.0, 100.0, lambda: paused["now"], poll_s=0.01)

    def tap(name, item):
        if name == "speech":
            spoken.append(item)
        if name == "animation":
            shown.append(item)

    run = asyncio.create_task(made([text, pacing, speech, holding, animation], tap=tap))
    while len(shown) < 3:
        await asyncio.sleep(0.005)
    paused["now"] = True
    await asyncio.sleep(0.05)  # what was on its way when the pause came
    during = len(spoken), len(shown)
    await asyncio.sleep(0.3)
    assert (len(spoken), len(shown)) == during, "the reply went on being made while its listener was paused"
    assert len(spoken) < 40
    paused["now"] = False
    frames = await asyncio.wait_for(run, 5)
    assert sum(len(f.pcm) for f in frames) == pytest.approx(40 * WORD_S * BYTES_PER_S, abs=2)


class FeedingAnimator:
    """An animator whose audio is read by a feeder task of its own (as a gRPC call's writer reads it), which the
    failure cancels midway."""

    def __init__(self, fail_after_frames: int):
        self.fail_after_frames = fail_after_frames

    async def animate(self, audio, face, meta, video, metadata=(), sample_rate=16000):
        received: asyncio.Queue = asyncio.Queue()

        async def feed():
            async for chunk in audio:
                await received.put(chunk.pcm)

        feeder = asyncio.create_task(feed())
        try:
            for n in range(self.fail_after_frames):
                pcm = await received.get()
                yield Frame(n * 0.04, pcm, b"\xff\xd8jpeg", True)
            raise StageFailed("animation", "the animation stage went away")
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)


async def test_audio_the_failed_animation_was_still_reading_goes_on_as_audio_only():
    stages = fake_stages(llm=FakeTextEngine(ANSWER, word_delay_s=0.01), sda=FeedingAnimator(fail_after_frames=3))
    items = await asyncio.wait_for(made(reply_processors.reply_processors(stages)), 5)
    frames = [i for i in items if isinstance(i, Frame)]
    audio_only = [i for i in items if isinstance(i, AudioOnly)]
    heard = sum(len(f.pcm) for f in frames) + sum(len(a.pcm) for a in audio_only)
    assert len(frames) == 3 and heard == int(len(ANSWER.split()) * WORD_S * BYTES_PER_S)
