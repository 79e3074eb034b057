"""The conversation's own rules, with faked stages and a real Redis: barge-in (while a reply is made and while it
plays), speculation, audio-only fall-back, a failing stage, history (trimmed, capped, interrupted replies) and
resume. Each runs in milliseconds."""

import asyncio
import json

import numpy as np
import pytest

from core.audio import encode_linear16
from core.avatar_bundle import withdraw

from services.gateway import history, media_messages
from services.gateway.config import GatewaySettings
from services.gateway.conversation import Conversation
from services.gateway.protocol import Hello
from services.gateway.session_store import SessionStore, StoreUnavailable
from services.gateway.stages import SpeechChunk, SpeechEvent, Transcript, Word
from services.runner.redis_server import EmbeddedRedis
from tests.consent import published_bundle
from services.gateway.playback import CLIENT_JITTER_S as JITTER
from tests.fake_stages import WORD_S, FakeAnimator, FakeTextEngine, fake_stages
from tests.manual_clock import ManualClock
from tests.reliability_figures import record
from tests.voices import UNFAMILIAR, say

pytestmark = pytest.mark.unit


async def _serving() -> dict:
    return {"asr": "SERVING", "llm": "SERVING", "tts": "SERVING", "sda": "SERVING"}


class Talk:
    """One connection's conversation, driven as the recogniser would, with everything it emits recorded."""

    def __init__(self, store: SessionStore, settings: GatewaySettings | None = None, **stages):
        self.stages = fake_stages(**stages)
        self.clock = ManualClock()
        self.out: list = []
        # The clock moves only by hand: animation is not paced to a listener who never plays on (the pacing's own
        # tests are in test_reply_processors.py).
        settings = (settings or GatewaySettings(avatars_dir="")).model_copy(update={"animation_lead_s": 1e9})
        self.conversation = Conversation(self.stages, store, settings, self.out.append, _serving, clock=self.clock)

    async def start(self, **hello) -> dict:
        await self.conversation.start(Hello(type="hello", version=1, **hello))
        self.conversation.audio(b"\0\0")  # the recogniser starts listening with the first audio
        return self.events("ready")[-1] if self.events("ready") else self.events("error")[-1]

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.out if isinstance(e, dict) and e["type"] == kind]

    def media(self, turn: int) -> list[dict]:
        return [m for m in map(media_messages.parse, (e for e in self.out if isinstance(e, bytes))) if m["turn"] == turn]

    async def until(self, kind: str, count: int = 1, within_s: float = 2.0) -> dict:
        for _ in range(int(within_s * 1000)):
            if len(self.events(kind)) >= count:
                return self.events(kind)[count - 1]
            await asyncio.sleep(0.001)
        raise AssertionError(f"no {kind} #{count}; got {[e['type'] for e in self.out if isinstance(e, dict)]}")

    def ask(self, text: str, paused_partial: str | None = None) -> None:
        """The user says `text`: speech starts, a partial at the pause, the end of turn, the final."""
        self.stages.asr.say(SpeechEvent("speech_start", 0.0),
                            Transcript(text if paused_partial is None else paused_partial, False, speech_paused=True),
                            SpeechEvent("end_of_turn", 1.0), Transcript(text, True))

    def speak_over(self, text: str, final: bool = False) -> None:
        self.stages.asr.say(SpeechEvent("speech_start", 0.0), Transcript(text, final))

    async def pause_a_played_reply(self, played_s: float = 0.0) -> None:
        """A reply made whole and `played_s` into playing, then speech over it: the reply pauses."""
        await self.start()
        self.ask("Tell me about the sea.")
        await self.until("turn_end")
        self.clock.now += JITTER + played_s  # the player starts a jitter buffer after the first media
        self.stages.asr.say(SpeechEvent("speech_start", 5.0))
        await self.until("pause")

    async def close(self) -> None:
        await self.conversation.close()


@pytest.fixture
async def store(redis_url):
    store = SessionStore(redis_url, ttl_s=600, max_history=64)
    yield store
    await store.close()


async def test_a_question_gets_a_reply_with_frames_and_both_sides_are_remembered(store):
    talk = Talk(store)
    await talk.start()
    talk.ask("Tell me about the sea.")
    end = await talk.until("turn_end")
    answer = talk.stages.llm.answer
    assert end["turn"] == 0 and end["reply"] == answer and end["speculated"]
    frames = talk.media(0)
    assert all(f["kind"] == "video" for f in frames)
    assert len(frames) * 0.04 == pytest.approx(WORD_S * len(answer.split()), abs=0.04)
    await talk.close()
    stored = await store.history(talk.conversation.session_id)
    assert [(m["role"], m["content"], m["interrupted"]) for m in stored] == [
        ("user", "Tell me about the sea.", False), ("assistant", answer, False)]


async def test_ready_says_which_model_answers(store):
    talk = Talk(store)
    ready = await talk.start()
    assert ready["model"] == {"name": "word-by-word", "backend": "fake", "context_tokens": 0}


async def test_a_client_that_lists_video_codecs_gets_the_first_one_offered_and_frames_in_it(store):
    talk = Talk(store, llm=FakeTextEngine(word_delay_s=0.002))
    ready = await talk.start(media={"video": ["h264", "jpeg"]})
    assert ready["output_video"] == {"codec": "h264", "codec_string": "avc1.42E01F"}
    talk.ask("Tell me about the sea.")
    await talk.until("reply_delta")
    while len(talk.media(0)) < 3:
        await asyncio.sleep(0.001)
    talk.conversation.keyframe()  # the client's decoder lost its place
    await talk.until("turn_end")
    frames = talk.media(0)
    assert all(f["encoded"] and f["image"].startswith(b"h264 frame") for f in frames)
    keyframes = [i for i, f in enumerate(frames) if f["keyframe"]]
    assert keyframes[0] == 0 and len(keyframes) == 2 and keyframes[1] >= 3  # the start, and the one asked for
    await talk.close()


async def test_without_a_codec_list_frames_are_jpeg_and_a_list_the_gateway_cannot_serve_is_refused(store):
    plain = Talk(store)
    assert (await plain.start())["output_video"]["codec"] == "jpeg"
    plain.ask("Tell me about the sea.")
    await plain.until("turn_end")
    assert {(f["encoded"], f["image"][:2]) for f in plain.media(0)} == {(False, b"\xff\xd8")}
    await plain.close()
    jpeg_only = GatewaySettings(avatars_dir="", video_codecs=["jpeg"])
    fallback = Talk(store, jpeg_only)
    assert (await fallback.start(media={"video": ["vp8", "jpeg"]}))["output_video"]["codec"] == "jpeg"
    await fallback.close()
    refused = Talk(store, jpeg_only)
    error = await refused.start(media={"video": ["h264"]})
    assert error["code"] == "unsupported_media" and "h264" in error["message"] and not refused.events("ready")
    await refused.close()


def _opus_seconds(packets: list[bytes]) -> float:
    import av

    decoder = av.CodecContext.create("libopus", "r")
    decoder.layout = "mono"
    return sum(frame.samples / frame.sample_rate for p in packets for frame in decoder.decode(av.Packet(p)))


async def test_opus_audio_rides_on_the_frames_and_goes_on_alone_when_animation_fails(store):
    talk = Talk(store, sda=FakeAnimator(fail_after_frames=10))
    ready = await talk.start(media={"video": ["vp8"], "audio": ["opus", "linear16"]})
    assert ready["output_audio"]["encoding"] == "opus" and 0 < ready["output_audio"]["pre_skip_s"] < 0.04
    talk.ask("Tell me about the sea.")
    await talk.until("turn_end")
    sent = talk.media(0)
    assert [m["kind"] for m in sent[:10]] == ["video"] * 10 and {m["kind"] for m in sent[10:]} == {"audio"}
    assert [m["pts"] for m in sent] == pytest.approx([i * 0.04 for i in range(len(sent))])  # one packet each
    spoken_s = WORD_S * len(talk.stages.llm.answer.split())
    packets = [m["audio"] for m in sent]
    assert _opus_seconds(packets) == pytest.approx(spoken_s, abs=0.04)  # nothing lost
    assert sum(map(len, packets)) < spoken_s * 32000 / 8  # a fraction of the PCM
    await talk.close()


async def test_words_over_a_reply_being_made_stop_it_and_history_keeps_what_was_heard(store):
    talk = Talk(store, llm=FakeTextEngine(word_delay_s=0.002))
    await talk.start()
    talk.ask("Tell me about the sea.")
    await talk.until("reply_delta", 6)
    talk.clock.now += JITTER + 2 * WORD_S + 0.01  # the user has heard two words of it
    talk.speak_over("Wait, stop")
    interrupted = await talk.until("interrupted")
    assert interrupted["turn"] == 0 and interrupted["heard"] == "Sure. The"
    await asyncio.sleep(0.01)
    assert talk.stages.llm.cancelled == 1 and not talk.events("turn_end")  # the text engine stopped too
    await talk.close()
    stored = await store.history(talk.conversation.session_id)
    assert stored[-1] == {"role": "assistant", "content": "Sure. The", "interrupted": True}


async def test_words_over_a_reply_still_playing_stop_it_though_it_was_all_made(store):
    talk = Talk(store)
    await talk.start()
    talk.ask("Tell me about the sea.")
    await talk.until("turn_end")  # every frame was sent; the client plays them for another 2.8 s
    talk.clock.now += JITTER + 3 * WORD_S + 0.01
    talk.speak_over("Hang on", final=True)
    interrupted = await talk.until("interrupted")
    assert interrupted["heard"] == "Sure. The sea"
    await talk.until("turn_end", 2)  # "Hang on" is answered
    await talk.close()
    stored = await store.history(talk.conversation.session_id)
    assert stored[1] == {"role": "assistant", "content": "Sure. The sea", "interrupted": True}
    assert talk.stages.llm.requests[1].history[-1] == {"role": "assistant", "content": "Sure. The sea —"}


async def test_speech_after_the_reply_has_played_interrupts_nothing(store):
    talk = Talk(store)
    await talk.start()
    talk.ask("Tell me about the sea.")
    await talk.until("turn_end")
    talk.clock.now += 60
    talk.ask("And the mountains?")
    await talk.until("turn_end", 2)
    assert not talk.events("interrupted")
    await talk.close()


async def test_a_backchannel_over_a_reply_neither_stops_it_nor_opens_a_turn(store):
    talk = Talk(store, llm=FakeTextEngine(word_delay_s=0.002))
    await talk.start()
    talk.ask("Tell me about the sea.")
    await talk.until("reply_delta")
    talk.speak_over("mm-hmm", final=True)
    await talk.until("turn_end")
    assert not talk.events("interrupted") and len(talk.stages.llm.requests) == 1
    await talk.close()


async def test_speech_over_a_reply_pauses_it_and_a_cough_without_words_resumes_it(store):
    talk = Talk(store)
    await talk.start()
    talk.ask("Tell me about the sea.")
    await talk.until("turn_end")  # all made; it plays at the client for another 2.8 s
    talk.clock.now += 0.5
    talk.speak_over("", final=True)  # the recogniser heard a voice, and no words in it
    assert (await talk.until("pause"))["turn"] == 0
    assert (await talk.until("resume"))["turn"] == 0
    assert not talk.events("interrupted")
    await talk.close()


async def test_a_backchannel_that_has_ended_resumes_the_reply_before_its_turn_does(store):
    """The reply goes on as soon as the speaker has stopped and what they said stops nothing: a "mm-hmm" may end its
    turn only seconds later (a word the recogniser is unsure of waits for more speech), or not at all."""
    talk = Talk(store)
    await talk.pause_a_played_reply(played_s=0.5)
    talk.stages.asr.say(Transcript("Mm-hmm.", False, speech_paused=True))
    assert (await talk.until("resume"))["turn"] == 0
    assert not talk.events("interrupted")
    await talk.close()


async def test_speech_that_goes_on_after_the_words_of_its_pause_resumed_the_reply_pauses_it_again(store):
    """"Stop, tell me ..." with "Stop" misheard (an unsure "Saw."): the comma's pause resumed the reply, and the speech going on
    pauses it again at once, before any words of it are decoded."""
    talk = Talk(store)
    await talk.pause_a_played_reply(played_s=0.5)
    talk.stages.asr.say(Transcript("Saw.", False, speech_paused=True, words=(Word("Saw.", 5.0, 5.3, 0.02),)))
    await talk.until("resume")  # a word it was unsure of stops nothing
    talk.stages.asr.say(SpeechEvent("speech_resumed", 5.6))
    await talk.until("pause", 2)
    talk.stages.asr.say(Transcript("Saw, tell me about the ocean", False, speech_paused=True))
    assert (await talk.until("interrupted"))["turn"] == 0
    assert [e["turn"] for e in talk.events("speech_start")] == [0, 1]  # one turn for the client, not two
    await talk.close()


async def test_one_decode_misreading_a_backchannel_as_a_word_does_not_stop_the_reply(store):
    """A short "yeah" over the reply, first read "here" (no two decodes agree on it yet): that stops nothing;
    the speaker pauses, the recogniser reads "Yeah.", and the reply goes on."""
    talk = Talk(store)
    await talk.pause_a_played_reply(played_s=0.5)
    talk.stages.asr.say(Transcript("here", False, words=(Word("here", 5.0, 5.3, 0.8),), committed=0))
    await asyncio.sleep(0.05)
    assert not talk.events("interrupted")
    talk.stages.asr.say(Transcript("Yeah.", False, speech_paused=True, words=(Word("Yeah.", 5.0, 5.4, 0.8),)))
    assert (await talk.until("resume"))["turn"] == 0
    assert not talk.events("interrupted")
    await talk.close()


async def test_words_two_decodes_agree_on_stop_the_reply_before_the_speaker_pauses(store):
    talk = Talk(store)
    await talk.pause_a_played_reply(played_s=0.5)
    words = (Word("wait,", 5.0, 5.3, 0.9), Word("what", 5.3, 5.5, 0.9))
    talk.stages.asr.say(Transcript("wait, what", False, words=words, committed=1))
    assert (await talk.until("interrupted"))["turn"] == 0
    await talk.close()


async def test_a_question_that_pauses_over_a_reply_still_stops_it(store):
    talk = Talk(store)
    await talk.pause_a_played_reply(played_s=0.5)
    talk.stages.asr.say(Transcript("Wait, what was", False, speech_paused=True))
    assert (await talk.until("interrupted"))["turn"] == 0
    assert not talk.events("resume")
    await talk.close()


async def test_words_over_a_paused_reply_stop_it_where_it_paused(store):
    talk = Talk(store)
    await talk.pause_a_played_reply(played_s=2 * WORD_S + 0.01)
    talk.clock.now += 1.0  # the client stopped playing at the pause: the user heard no more of it
    talk.stages.asr.say(Transcript("Wait a moment", False))
    assert (await talk.until("interrupted"))["heard"] == "Sure. The"
    assert not talk.events("resume")
    await talk.close()


async def test_a_cough_the_recogniser_reads_as_a_word_it_is_unsure_of_does_not_stop_the_reply(store):
    talk = Talk(store, GatewaySettings(avatars_dir="", pause_resume_s=0.05))
    await talk.pause_a_played_reply()
    talk.stages.asr.say(Transcript("you", False, words=(Word("you", 5.0, 5.3, 0.03),)),
                        Transcript("you", True, words=(Word("you", 5.0, 5.3, 0.04),)))
    await talk.until("resume")
    assert not talk.events("interrupted")
    await talk.close()


async def test_a_paused_reply_resumes_by_itself_when_no_words_come(store):
    talk = Talk(store, GatewaySettings(avatars_dir="", pause_resume_s=0.05))
    await talk.pause_a_played_reply()
    await talk.until("resume")
    await talk.close()


class SpeakingSynthesizer:
    """Speech-like sound (noise shaped by a syllable rhythm) instead of silence: WORD_S a word."""

    async def synthesize(self, text, voice, meta, metadata=()):
        rng = np.random.default_rng(7)
        async for delta in text:
            n = int(16000 * WORD_S * len(delta.split()))
            envelope = 0.5 + 0.5 * np.sin(np.arange(n) * 2 * np.pi * 4 / 16000) ** 2
            yield SpeechChunk(encode_linear16(0.3 * rng.standard_normal(n) * envelope), delta.strip())


def reply_audio(talk: Talk, turn: int = 0) -> np.ndarray:
    return np.concatenate([np.frombuffer(m["audio"], np.int16) for m in talk.media(turn)]).astype(np.float32) / 32768


async def test_the_reply_heard_back_through_the_speakers_neither_pauses_nor_stops_it(store):
    talk = Talk(store, tts=SpeakingSynthesizer())
    await talk.start()
    talk.ask("Tell me about the sea.")
    await talk.until("turn_end")
    talk.clock.now += 1.2  # the user hears the reply 1.2 s in; it comes back 150 ms later and 24 dB quieter
    echo = reply_audio(talk)[int(0.35 * 16000) : int(1.05 * 16000)] * 10 ** (-24 / 20)
    talk.conversation.audio(encode_linear16(echo))
    talk.stages.asr.say(SpeechEvent("speech_start", 5.0), Transcript("The sea", False), Transcript("The sea", True))
    await asyncio.sleep(0.05)
    assert not talk.events("pause") and not talk.events("interrupted")
    assert len(talk.stages.llm.requests) == 1  # nor is the echo a question to answer
    await talk.close()


async def test_a_person_speaking_over_the_echo_still_stops_the_reply(store):
    talk = Talk(store, tts=SpeakingSynthesizer())
    await talk.start()
    talk.ask("Tell me about the sea.")
    await talk.until("turn_end")
    talk.clock.now += 1.2
    echo = reply_audio(talk)[int(0.35 * 16000) : int(1.05 * 16000)] * 10 ** (-24 / 20)
    voice = say("Wait, what about rivers?", UNFAMILIAR[2]).samples[: echo.size]
    talk.conversation.audio(bytes(16000))  # the live microphone before: a quiet room
    talk.conversation.audio(encode_linear16(echo + voice))
    talk.stages.asr.say(SpeechEvent("speech_start", 5.0))
    await talk.until("pause")
    # The recogniser hears echo and person as one utterance: the reply's words, then the person's (timed in the
    # microphone's audio: the quiet room's half second, then the 0.7 s of echo and voice).
    echoed = "".join(e["text"] for e in talk.events("reply_delta")).split()[:6]  # what it heard so far
    words = [Word(w, 0.5 + 0.05 * i, 0.55 + 0.05 * i, 0.9) for i, w in enumerate(echoed)]
    words += [Word("wait,", 0.85, 1.0, 0.9), Word("rivers", 1.0, 1.2, 0.9)]
    talk.stages.asr.say(Transcript(" ".join(w.w for w in words), False, words=tuple(words), committed=len(words)))
    await talk.until("interrupted")
    await talk.close()


async def test_a_person_who_starts_speaking_inside_the_echo_pauses_the_reply(store):
    """The recogniser's speech began with the echo (no pause: it is the reply's own); a person then speaks over
    it, in the same utterance: the reply pauses then, without a new onset."""
    talk = Talk(store, tts=SpeakingSynthesizer())
    await talk.start()
    talk.ask("Tell me about the sea.")
    await talk.until("turn_end")
    talk.conversation.audio(bytes(32000))  # the live microphone before: a quiet room
    reply, voice = reply_audio(talk), say("Wait, what about rivers?", UNFAMILIAR[2]).samples

    def microphone(frame: int, with_voice: bool) -> bytes:
        """The 100 ms the client plays from 0.5 s into the reply on: its echo (150 ms late, 24 dB down)."""
        talk.clock.now += 0.1
        echo = reply[int((0.35 + 0.1 * frame) * 16000) : int((0.45 + 0.1 * frame) * 16000)] * 10 ** (-24 / 20)
        return encode_linear16(echo + (voice[1600 * frame : 1600 * (frame + 1)] if with_voice else 0))

    talk.clock.now += 0.5
    for frame in range(5):
        talk.conversation.audio(microphone(frame, False))
    talk.stages.asr.say(SpeechEvent("speech_start", 5.0))
    await asyncio.sleep(0.05)
    assert not talk.events("pause")
    for frame in range(5, 15):
        talk.conversation.audio(microphone(frame, True))
    await talk.until("pause")
    await talk.close()


async def test_words_that_go_on_before_any_of_the_reply_played_are_answered_with_the_words_before(store):
    """The recogniser ended a turn at "Hello!" and the user went on: the reply, cut before it was heard, is not
    lost words: the next reply answers the whole question, and the history holds it once."""
    talk = Talk(store, llm=FakeTextEngine(word_delay_s=0.2))
    await talk.start()
    talk.ask("Hello!")
    await talk.until("transcript", 2)  # the final: the reply is being made, nothing of it sent yet
    talk.speak_over("How are you")
    await talk.until("interrupted")
    talk.stages.asr.say(SpeechEvent("end_of_turn", 2.0), Transcript("How are you today?", True))
    await talk.until("turn_end", within_s=10)
    assert talk.stages.llm.requests[-1].user_text == "Hello! How are you today?"
    await talk.close()
    stored = await store.history(talk.conversation.session_id)
    assert [m["content"] for m in stored if m["role"] == "user"] == ["Hello! How are you today?"]


async def test_with_the_word_threshold_off_speech_start_alone_stops_the_reply(store):
    talk = Talk(store, llm=FakeTextEngine(word_delay_s=0.002))
    await talk.start(settings={"barge_in_min_words": 0})
    talk.ask("Tell me about the sea.")
    await talk.until("reply_delta")
    talk.stages.asr.say(SpeechEvent("speech_start", 5.0))
    assert (await talk.until("interrupted"))["turn"] == 0
    await talk.close()


async def test_a_speculated_reply_is_kept_when_the_final_says_the_same_and_dropped_when_not(store):
    talk = Talk(store)
    await talk.start()
    talk.ask("What is your name?", paused_partial="um what is your name")
    assert (await talk.until("turn_end"))["speculated"] and len(talk.stages.llm.requests) == 1
    talk.clock.now += 60
    talk.ask("What is your favourite colour?", paused_partial="What is your")
    end = await talk.until("turn_end", 2)
    assert not end["speculated"]
    assert [r.user_text for r in talk.stages.llm.requests[1:]] == ["What is your", "What is your favourite colour?"]
    await talk.close()


async def test_the_history_holds_the_words_a_kept_speculation_answered(store):
    """The final said the paused words again with other punctuation and case: the reply kept is the one the text
    engine wrote to the paused words, and the next turn's history gives it those, so its prompt begins with the
    very text the engine evaluated (its cached prefix) instead of differing from the question on."""
    talk = Talk(store)
    await talk.start()
    talk.ask("Can you explain how rainbows form, step by step?",
             paused_partial="Can you explain how rainbows form step by step.")
    assert (await talk.until("turn_end"))["speculated"]
    talk.clock.now += 60
    talk.ask("Thank you.")
    await talk.until("turn_end", 2)
    assert talk.stages.llm.requests[-1].history[0] == {
        "role": "user", "content": "Can you explain how rainbows form step by step."}
    await talk.close()


async def _given(tts, enough, within_s: float = 2.0) -> None:
    """Until the first synthesis call has been given text that is `enough`."""
    for _ in range(int(within_s * 1000)):
        if tts.given and enough("".join(tts.given[0])):
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"speech synthesis was given {tts.given} before the turn ended")


async def test_a_speculated_reply_is_spoken_from_its_first_sentence_while_the_turn_is_judged(store):
    """The first sentence goes to speech synthesis before the turn has ended, nothing is sent before it ends, and
    the kept reply's one synthesis call speaks every word once."""
    talk = Talk(store)
    await talk.start()
    talk.stages.asr.say(SpeechEvent("speech_start", 0.0), Transcript("Tell me about the sea.", False, speech_paused=True))
    tts = talk.stages.tts
    await _given(tts, lambda text: text.startswith("Sure."))
    await asyncio.sleep(0.05)  # the text engine has written the whole answer by now
    assert "wide" not in "".join(tts.given[0]), "speech went past the first sentence before the reply was kept"
    assert not talk.media(0) and not talk.events("reply_delta")
    talk.stages.asr.say(SpeechEvent("end_of_turn", 1.0), Transcript("Tell me about the sea.", True))
    end = await talk.until("turn_end")
    assert end["speculated"] and end["reply"] == talk.stages.llm.answer
    assert len(tts.given) == 1 and "".join(tts.given[0]) == talk.stages.llm.answer
    assert len(talk.media(0)) * 0.04 == pytest.approx(WORD_S * len(end["reply"].split()), abs=0.04)
    await talk.close()


async def test_a_speculation_the_final_drops_stops_its_speech_and_the_reply_speaks_only_its_own(store):
    talk = Talk(store)
    await talk.start()
    talk.stages.asr.say(SpeechEvent("speech_start", 0.0), Transcript("What is your", False, speech_paused=True))
    tts = talk.stages.tts
    await _given(tts, bool)
    talk.stages.asr.say(SpeechEvent("end_of_turn", 1.0), Transcript("What is your favourite colour?", True))
    end = await talk.until("turn_end")
    assert not end["speculated"] and tts.cancelled == 1
    assert len(tts.given) == 2 and "".join(tts.given[1]) == end["reply"]
    assert len(talk.media(0)) * 0.04 == pytest.approx(WORD_S * len(end["reply"].split()), abs=0.04)
    await talk.close()


async def test_when_animation_fails_the_rest_of_the_reply_comes_as_audio_only(store):
    talk = Talk(store, sda=FakeAnimator(fail_after_frames=10))
    await talk.start()
    talk.ask("Tell me about the sea.")
    end = await talk.until("turn_end")
    assert talk.events("warning")[0]["code"] == "video_unavailable" and end["reply"]
    sent = talk.media(0)
    assert [m["kind"] for m in sent[:10]] == ["video"] * 10 and {m["kind"] for m in sent[10:]} == {"audio"}
    audio = b"".join(m["audio"] for m in sent)
    assert len(audio) == int(16000 * WORD_S) * 2 * len(talk.stages.llm.answer.split())  # nothing lost
    pts = [m["pts"] for m in sent]
    assert pts == sorted(pts)
    await talk.close()


async def test_a_text_engine_failing_midway_ends_the_turn_with_an_error_and_the_next_turn_works(store):
    talk = Talk(store, llm=FakeTextEngine(fail_after_words=3))
    await talk.start()
    talk.ask("Tell me about the sea.")
    end = await talk.until("turn_end")
    assert talk.events("error")[0]["code"] == "stage_error" and end["reply"] == "Sure. The sea"
    talk.stages.llm.fail_after_words = None
    talk.clock.now += 60
    talk.ask("Try again?")
    assert (await talk.until("turn_end", 2))["reply"] == talk.stages.llm.answer
    await talk.close()


async def test_a_long_resumed_session_sends_whole_blocks_of_history_within_the_limits(redis_url):
    """110 exchanges (the text engine refuses more than 200 messages): the newest whole blocks go."""
    store = SessionStore(redis_url, ttl_s=600, max_history=400)
    settings = GatewaySettings(avatars_dir="", history_messages=128, history_tokens=100_000)
    session = await store.create("default", {}, "anonymous")
    for i in range(110):
        await store.append_history(session, history.entry("user", f"question {i}"), 2 * i + 1)
        await store.append_history(session, history.entry("assistant", f"answer {i}"), 2 * i + 2)
    talk = Talk(store, settings)
    assert (await talk.start(session_id=session))["history_messages"] == 220
    talk.ask("And now?")
    await talk.until("turn_end")
    sent = talk.stages.llm.requests[0].history
    assert len(sent) == 220 - 96 and sent[0]["content"] == "question 48"  # three blocks of 32 dropped
    assert sent[-1]["content"] == "answer 109"
    talk.clock.now += 60
    talk.ask("And then?")
    await talk.until("turn_end", 2)
    # one turn later the same start: the text engine's cached prompt prefix still holds
    assert talk.stages.llm.requests[1].history[0]["content"] == "question 48"
    await talk.close()
    await store.close()


async def test_history_is_trimmed_by_tokens_and_stored_history_is_capped(store):
    settings = GatewaySettings(avatars_dir="", history_tokens=400, history_stored=64)
    talk = Talk(store, settings, llm=FakeTextEngine(answer="word " * 40))
    await talk.start()
    for i in range(40):
        talk.ask(f"Question number {i}, a long one with many words in it to take room.")
        await talk.until("turn_end", i + 1)
        talk.clock.now += 60
    requests = talk.stages.llm.requests
    costs = [sum(history.estimated_tokens(m["content"]) for m in r.history) for r in requests]
    assert max(costs) <= 400 and len(requests[-1].history) > 0
    await talk.close()
    stored = await store.history(talk.conversation.session_id)
    assert 32 <= len(stored) <= 64 and stored[-1]["role"] == "assistant"


async def test_resume_keeps_the_stored_avatar_and_settings_unless_the_hello_changes_them(store, tmp_path):
    published_bundle(tmp_path, "eileen-abc123")
    settings = GatewaySettings(avatars_dir=str(tmp_path))
    talk = Talk(store, settings)
    await talk.start(avatar_id="eileen-abc123", settings={"barge_in_min_words": 3, "end_of_turn_silence_ms": 900})
    session = talk.conversation.session_id
    await talk.close()
    again = Talk(store, settings)
    ready = await again.start(session_id=session)
    assert ready["resumed"] and ready["avatar_id"] == "eileen-abc123"
    assert ready["settings"]["barge_in_min_words"] == 3 and ready["settings"]["end_of_turn_silence_ms"] == 900
    await asyncio.sleep(0)
    assert again.stages.asr.configs[-1].end_of_turn_silence_ms == 900
    await again.close()
    changed = Talk(store, settings)
    ready = await changed.start(session_id=session, settings={"barge_in_min_words": 2})
    assert ready["settings"]["barge_in_min_words"] == 2 and ready["settings"]["end_of_turn_silence_ms"] == 900
    assert ready["avatar_id"] == "eileen-abc123"
    await changed.close()


async def test_the_recogniser_leans_to_the_users_terms_the_avatars_name_and_its_knowledges_names(tmp_path, store):
    avatar = published_bundle(tmp_path, "anna").folder
    (avatar / "knowledge").mkdir(parents=True)
    (avatar / "persona.json").write_text(json.dumps({"name": "Anneliese"}))
    (avatar / "knowledge" / "trip.txt").write_text("We climbed Kilimanjaro with Siobhan.")
    talk = Talk(store, GatewaySettings(avatars_dir=str(tmp_path)))
    await talk.start(avatar_id="anna", settings={"vocabulary": ["Zorblax"]})
    await talk.until("ready")
    for _ in range(100):
        if talk.stages.asr.configs:
            break
        await asyncio.sleep(0.01)
    assert talk.stages.asr.configs[-1].vocabulary == ("Zorblax", "Anneliese", "Kilimanjaro", "Siobhan")
    await talk.close()


async def test_turn_numbers_stay_unique_across_reconnects(store):
    talk = Talk(store)
    await talk.start()
    for question in ("One?", "Two?"):
        talk.ask(question)
        await talk.until("turn_end", len(talk.events("turn_end")) + 1)
        talk.clock.now += 60
    session = talk.conversation.session_id
    await talk.close()
    again = Talk(store)
    assert (await again.start(session_id=session))["next_turn"] == 2
    again.ask("Three?")
    assert (await again.until("turn_end"))["turn"] == 2
    assert again.media(2) and not again.media(0)
    await again.close()


async def test_an_unknown_session_is_refused(store):
    talk = Talk(store)
    error = await talk.start(session_id="no-such-session")
    assert error["code"] == "unknown_session"


async def test_a_redis_restart_mid_conversation_loses_nothing(tmp_path):
    """While Redis is down the conversation goes on from memory and a new session is told why it cannot start;
    once Redis is back what was said meanwhile is written back, and the session outlives another restart."""
    redis = EmbeddedRedis(data_dir=tmp_path / "redis")
    store = SessionStore(redis.url, ttl_s=600)
    try:
        talk = Talk(store)
        await talk.start()
        for i, question in enumerate(("One?", "Two?", "Three?")):
            if question == "Two?":
                redis.down()
            talk.ask(question)
            await talk.until("turn_end", i + 1)
            talk.clock.now += 60
            if question == "Two?":
                error = await Talk(store).start()
                assert error["code"] == "sessions_unavailable" and not error["fatal"]
                redis.up()
        assert [e["turn"] for e in talk.events("turn_end")] == [0, 1, 2] and not talk.events("error")
        await talk.close()
        redis.down()
        redis.up()  # the append-only file brings it all back
        session = talk.conversation.session_id
        stored = await store.history(session)
        assert [m["content"] for m in stored if m["role"] == "user"] == ["One?", "Two?", "Three?"]
        next_turn = (await store.get(session))["next_turn"]
        assert len(stored) == 6 and next_turn == 3
        record("redis_restart", f"{len(stored)} messages stored in the order said, next turn {next_turn}")
    finally:
        await store.close()
        redis.stop()


class StoreThatDropsAnswers(SessionStore):
    """Redis goes down after taking a history write and before answering it: the write is there, the gateway is
    told it failed."""

    def __init__(self, url: str, failures: int):
        super().__init__(url, ttl_s=600)
        self.failures = failures

    async def append_history(self, session_id: str, entry: dict, number: int) -> None:
        await super().append_history(session_id, entry, number)
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the session store is unavailable: connection lost before the answer")


async def test_a_history_write_tried_again_after_redis_took_it_is_stored_once(redis_url):
    store = StoreThatDropsAnswers(redis_url, failures=2)
    try:
        talk = Talk(store)
        await talk.start()
        for i, question in enumerate(("One?", "Two?")):
            talk.ask(question)
            await talk.until("turn_end", i + 1)
            talk.clock.now += 60
        await talk.close()
        stored = await store.history(talk.conversation.session_id)
        assert [m["role"] for m in stored] == ["user", "assistant"] * 2
        assert [m["content"] for m in stored if m["role"] == "user"] == ["One?", "Two?"]
        resumed = Talk(store)
        assert (await resumed.start(session_id=talk.conversation.session_id))["history_messages"] == 4
        resumed.ask("Three?")
        await resumed.until("turn_end")
        await resumed.close()
        assert len(await store.history(talk.conversation.session_id)) == 6
    finally:
        await store.close()


class HangingSynthesizer:
    """Takes the text and never answers: a stage stuck, or a connection gone silent."""

    async def synthesize(self, text, voice, meta, metadata=()):
        async for _ in text:
            pass
        await asyncio.Event().wait()
        yield  # pragma: no cover


async def test_a_stage_that_hangs_ends_the_turn_with_a_typed_error_and_the_next_turn_works(store):
    settings = GatewaySettings(avatars_dir="", reply_stall_s=0.2)
    talk = Talk(store, settings, tts=HangingSynthesizer())
    await talk.start()
    talk.ask("Tell me about the sea.")
    end = await talk.until("turn_end")
    error = talk.events("error")[0]
    assert error["code"] == "stage_unavailable" and "last from text" in error["message"] and end["reply"]
    talk.stages.tts = fake_stages().tts
    talk.clock.now += 60
    talk.ask("And now?")
    assert (await talk.until("turn_end", 2))["reply"] and len(talk.events("error")) == 1
    await talk.close()


async def test_a_hello_for_an_avatar_withdrawn_unknown_or_not_consented_to_conversation_is_refused(tmp_path, store):
    published_bundle(tmp_path, "kept")
    published_bundle(tmp_path, "video-only", scopes=("video_export", "face"))
    published_bundle(tmp_path, "gone")
    withdraw(tmp_path, "gone", "ops", "the person asked")
    settings = GatewaySettings(avatars_dir=str(tmp_path))
    for avatar_id, code in (("gone", "no_consent"), ("video-only", "no_consent"), ("nobody", "unknown_avatar")):
        talk = Talk(store, settings)
        await talk.conversation.start(Hello(type="hello", version=1, avatar_id=avatar_id))
        assert [e["code"] for e in talk.events("error")] == [code] and not talk.events("ready"), avatar_id
    talk = Talk(store, settings)
    assert (await talk.start(avatar_id="kept"))["avatar_id"] == "kept"
    await talk.close()


async def test_the_hello_chooses_a_voice_the_synthesis_has_and_an_unknown_one_is_refused(store):
    talk = Talk(store)
    ready = await talk.start(settings={"voice": "en_GB-alba-medium"})
    assert ready["settings"]["voice"] == "en_GB-alba-medium"
    talk.ask("Hello there.")
    await talk.until("turn_end")
    assert talk.stages.tts.spoken_with == ["en_GB-alba-medium"]
    await talk.close()
    refused = Talk(store)
    await refused.conversation.start(Hello(type="hello", version=1, settings={"voice": "nobody"}))
    error = refused.events("error")[0]
    assert error["code"] == "unknown_voice" and "en_US-joe-medium" in error["message"] and not refused.events("ready")
    plain = Talk(store)
    session_id = (await plain.start())["session_id"]
    plain.ask("Hello there.")
    await plain.until("turn_end")
    assert plain.stages.tts.spoken_with == [""]  # the avatar's own, here the default
    await plain.close()
    wrong = Talk(store)  # a resume naming an unknown voice is refused and changes nothing stored
    await wrong.conversation.start(Hello(type="hello", version=1, session_id=session_id, settings={"voice": "nobody"}))
    assert wrong.events("error")[0]["code"] == "unknown_voice"
    resumed = Talk(store)
    assert (await resumed.start(session_id=session_id))["settings"]["voice"] == ""
    await resumed.close()
