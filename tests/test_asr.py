"""The ASR contract with the real packaged Whisper model, through the gRPC stream."""

import contextlib
import re
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from avatar.asr.v1 import asr_pb2, asr_pb2_grpc

from tests.grpc_helpers import asr_requests, with_silence
from tests.noisy_neighbour import busy_core
from tests.speech import SENTENCES, library_text, library_whisper, says_twice, speak, wer
from tests.voices import HESITATIONS, QUESTIONS, UNFAMILIAR, hesitation, say

pytestmark = pytest.mark.contract


def recognize(stack, requests):
    with grpc.insecure_channel(stack.address("asr")) as channel:
        return list(asr_pb2_grpc.AsrServiceStub(channel).StreamingRecognize(requests, timeout=120))


def hypotheses(responses, final=None):
    hyps = [r.hypothesis for r in responses if r.WhichOneof("result") == "hypothesis"]
    return [h for h in hyps if final is None or h.is_final == final]


def events(responses, kind):
    return [r.event for r in responses if r.WhichOneof("result") == "event" and r.event.type == kind]


def test_sentences_are_transcribed_with_partials_and_timings(stack):
    """Transcription, one turn a sentence: the silence rule, so that a clause a sentence pauses after ("The
    weather is lovely today, …") is not a turn of its own (semantic end of turn may end one there, and the
    gateway answers both together when the speaker goes on: test_conversation.py)."""
    pairs = []
    silence = asr_pb2.RecognitionConfig.END_OF_TURN_SILENCE
    for sentence in SENTENCES[:10]:
        responses = recognize(stack, asr_requests(with_silence(speak(sentence)), speed=3.0, end_of_turn=silence))
        finals = hypotheses(responses, final=True)
        assert len(finals) == 1, [h.transcript for h in finals]
        final = finals[0]
        pairs.append((sentence, final.transcript))
        # Partials come before the final, and committed words never change while the speaker goes on (a pause's
        # decode of the whole turn and the final may correct them).
        kinds = [h.is_final for h in hypotheses(responses)]
        assert kinds.index(True) > 0, f"no partial before the final for {sentence!r}"
        committed = []
        for hyp in hypotheses(responses, final=False):
            words = [w.word for w in hyp.words]
            if not hyp.speech_paused:
                assert words[: len(committed)] == committed
            committed = words[: hyp.committed_words]
        starts = [w.start_s for w in final.words]
        assert starts == sorted(starts) and all(w.end_s >= w.start_s for w in final.words)
        assert all(0.0 <= w.confidence <= 1.0 for w in final.words)
    assert wer(pairs) <= 0.10, pairs


def test_two_utterances_give_two_turns(stack):
    audio = with_silence(speak(SENTENCES[10]), speak(SENTENCES[11]), gap_s=1.2)
    responses = recognize(stack, asr_requests(audio, end_of_turn_ms=500))
    assert len(events(responses, asr_pb2.SpeechEvent.SPEECH_START)) == 2
    assert len(events(responses, asr_pb2.SpeechEvent.END_OF_TURN)) == 2
    finals = hypotheses(responses, final=True)
    assert [h.turn_index for h in finals] == [0, 1]
    assert wer([(SENTENCES[10], finals[0].transcript), (SENTENCES[11], finals[1].transcript)]) <= 0.15


def test_silence_gives_an_empty_final(stack):
    quiet = np.random.default_rng(0).normal(0, 0.002, 16000 * 2).astype(np.float32)
    responses = recognize(stack, asr_requests(quiet))
    finals = hypotheses(responses, final=True)
    assert len(finals) == 1 and finals[0].transcript == ""
    assert not events(responses, asr_pb2.SpeechEvent.SPEECH_START)


def test_other_sample_rates_are_resampled(stack):
    sentence = "Please turn off the lights when you leave the room."
    responses = recognize(stack, asr_requests(with_silence(speak(sentence, 8000), rate=8000), rate=8000))
    finals = hypotheses(responses, final=True)
    assert wer([(sentence, finals[0].transcript)]) <= 0.2


def test_the_end_of_turn_silence_is_tunable_per_session(stack):
    """A 0.8 s pause splits two turns at 500 ms, but not when the session asks for 1500 ms."""
    audio = with_silence(speak("Hello there."), speak("How are you?"), gap_s=0.8)
    silence = asr_pb2.RecognitionConfig.END_OF_TURN_SILENCE
    split = recognize(stack, asr_requests(audio, end_of_turn_ms=500, end_of_turn=silence))
    joined = recognize(stack, asr_requests(audio, end_of_turn_ms=1500, end_of_turn=silence))
    assert len(hypotheses(split, final=True)) == 2
    assert len(hypotheses(joined, final=True)) == 1


@pytest.mark.parametrize("speed, neighbour", [(1.0, False), (2.0, False), (3.0, False), (3.0, True)],
                         ids=["1x", "2x", "3x", "3x-busy-core"])
def test_a_short_question_is_transcribed_once_not_in_a_loop(stack, speed, neighbour):
    """Whisper on a short window tended to say a short question again and again ("What is your name? What is
    your name? What is…"), and some loops reached the final; the user sees the question once. Every unfamiliar
    voice at once (their decodes queue behind each other, so each stream meets other timings), at several
    speeds, and with another process busy on one core."""
    def ask(voice):
        heard = []
        for question in QUESTIONS:
            responses = recognize(stack, asr_requests(with_silence(say(question, voice).samples), speed=speed))
            heard.append((question, voice.name, " ".join(h.transcript for h in hypotheses(responses, final=True))))
        return heard

    with busy_core() if neighbour else contextlib.nullcontext(), ThreadPoolExecutor(len(UNFAMILIAR)) as pool:
        heard = [item for items in pool.map(ask, UNFAMILIAR) for item in items]
    loops = [f"{voice}: {question!r} came out as {said!r}" for question, voice, said in heard if says_twice(said)]
    assert not loops, loops


@pytest.mark.parametrize("voice", UNFAMILIAR, ids=lambda v: v.name)
def test_a_thinking_pause_inside_a_sentence_does_not_end_the_turn(stack, voice):
    """A person pausing 0.7-1.1 s to think, mid-sentence, is one turn: the words so far read as left open, so the
    turn waits for the rest. A 500 ms silence rule split every one of these; where the recogniser mishears the
    words before the pause ("I was thinking her") they may read complete, so most, not all, must stay whole (the
    end-of-turn bench counts them)."""
    split = []
    for i, (head, tail) in enumerate(HESITATIONS):
        audio = hesitation(head, tail, voice, pause_s=0.7 + 0.08 * i)
        responses = recognize(stack, asr_requests(with_silence(audio, gap_s=3.0), speed=3.0))
        finals = [h.transcript for h in hypotheses(responses, final=True)]
        ends = [e.end_of_turn_reason for e in events(responses, asr_pb2.SpeechEvent.END_OF_TURN)]
        if len(finals) != 1:
            split.append((finals, ends))
    assert len(split) <= len(HESITATIONS) // 3, split


def test_speech_that_goes_on_after_a_pause_is_announced_as_resumed(stack):
    """Spoken in real time, a thinking pause gets its speech_paused partial (a client may act on those words); the
    voice going on is announced (SPEECH_RESUMED) before any of its words are decoded, and it is still one turn."""
    audio = hesitation("I was thinking that", "we could go to the park.", UNFAMILIAR[0], pause_s=1.0)
    responses = recognize(stack, asr_requests(with_silence(audio, gap_s=3.0), speed=1.0))
    kinds = [("paused" if r.hypothesis.speech_paused else "partial") if r.WhichOneof("result") == "hypothesis" and
             not r.hypothesis.is_final else asr_pb2.SpeechEvent.Type.Name(r.event.type) if r.WhichOneof("result") ==
             "event" else "final" for r in responses]
    assert kinds.count("SPEECH_START") == 1 and kinds.count("final") == 1, kinds
    resumed = kinds.index("SPEECH_RESUMED")
    assert "paused" in kinds[:resumed], kinds
    assert "park" not in " ".join(h.transcript for h in hypotheses(responses[:resumed])).lower()
    assert "park" in hypotheses(responses, final=True)[0].transcript.lower()


@pytest.mark.parametrize("voice", UNFAMILIAR, ids=lambda v: v.name)
def test_a_finished_question_ends_its_turn_soon_after_the_voice(stack, voice):
    """A whole question ends its turn as soon as it is judged, some 400-550 ms after the voice, not after a
    2.5 s wait; the event says which rule ended it. (Two sentences, "Hello! How are you today?", may end a turn
    at the first, a whole message: the gateway answers both together when the speaker goes on before the reply
    plays, test_conversation.py.) The judgement reads the words as heard: a question the recogniser mishears
    may read unfinished (rp-female-low's "Tell me something about the ocean." heard as "...about the notion.",
    0.0007 complete: it waits, for the cap or for the final's reading of it), so of the questions that do not end
    at once, at most one a voice may be one the recogniser misheard (in its final, or in a reading of the pause the
    model judged), and none may be one it heard right; the word error rates are the ear's tests."""
    late, misheard = [], []
    for question in [q for q in QUESTIONS if len(re.findall(r"[.?!]", q)) == 1]:
        utterance = say(question, voice)
        responses = recognize(stack, asr_requests(with_silence(utterance.samples, gap_s=3.0), speed=3.0))
        ends = events(responses, asr_pb2.SpeechEvent.END_OF_TURN)
        finals = [h.transcript for h in hypotheses(responses, final=True)]
        judged = [h.transcript for h in hypotheses(responses, final=False) if h.speech_paused]  # what the model read
        # with_silence puts 0.25 s of quiet before the utterance
        after_voice_s = ends[-1].audio_offset_s - 0.25 - utterance.voiced_end_s
        outcome = (question, finals, judged, [e.end_of_turn_reason for e in ends], round(after_voice_s, 2))
        if len(ends) != 1 or ends[0].end_of_turn_reason != "model" or after_voice_s > 0.6:
            heard = [" ".join(finals), *judged]
            (misheard if any(wer([(question, text)]) > 0 for text in heard) else late).append(outcome)
    assert not late, late
    assert len(misheard) <= 1, misheard


def test_the_final_is_as_accurate_as_the_librarys_own_decode_of_the_whole_utterance(stack):
    """The streaming path costs no accuracy: over unfamiliar voices, clean and under a room and a fan, the finals'
    word error rate is within a point or two of faster-whisper's own full-window beam-search decode of the same
    audio (the bench holds it to one point on more material)."""
    library = library_whisper()
    finals, full = [], []
    for voice in UNFAMILIAR:
        for spoken in (voice, voice.noisy()):
            for sentence in SENTENCES[:2]:
                samples = say(sentence, spoken).samples
                responses = recognize(stack, asr_requests(with_silence(samples), partials=False,
                                                          end_of_turn=asr_pb2.RecognitionConfig.END_OF_TURN_SILENCE))
                finals.append((sentence, " ".join(h.transcript for h in hypotheses(responses, final=True))))
                full.append((sentence, library_text(library, samples)))
    assert wer(finals) <= wer(full) + 0.02, (wer(finals), wer(full), finals)


NAMES = "My name is Siobhan and I live in Llandudno."


def _final_of(stack, samples, vocabulary=()) -> str:
    requests = asr_requests(with_silence(samples), partials=False, vocabulary=vocabulary,
                            end_of_turn=asr_pb2.RecognitionConfig.END_OF_TURN_SILENCE)
    return " ".join(h.transcript for h in hypotheses(recognize(stack, requests), final=True))


def test_a_sessions_vocabulary_makes_names_the_model_has_never_heard_recognisable(stack):
    """Whisper base hears "Siobhan" and "Llandudno" as "Chivon", "Santa No"; given them as the session's
    vocabulary, it writes them, and a sentence without them is not bent towards them."""
    voices = [v for v in UNFAMILIAR if v.name in ("us-female", "scottish-female", "gb-male-slow")]
    plain = [_final_of(stack, say(NAMES, voice).samples) for voice in voices]
    leaned = [_final_of(stack, say(NAMES, voice).samples, ("Siobhan", "Llandudno")) for voice in voices]
    heard = [sum(name in t for t in finals for name in ("Siobhan", "Llandudno")) for finals in (plain, leaned)]
    assert heard[0] == 0 and heard[1] >= 4, (plain, leaned)
    others = [(s, say(s, voices[0]).samples) for s in SENTENCES[4:8]]
    without = [(s, _final_of(stack, samples)) for s, samples in others]
    bent = [(s, _final_of(stack, samples, ("Siobhan", "Llandudno"))) for s, samples in others]
    assert not any("Siobhan" in t or "Llandudno" in t for _, t in bent), bent
    assert wer(bent) <= wer(without) + 0.02, (bent, without)


def test_a_vocabulary_too_large_is_refused_with_a_message(stack):
    with pytest.raises(grpc.RpcError) as refused:
        recognize(stack, asr_requests(np.zeros(1600, np.float32), vocabulary=[f"term{i}" for i in range(65)]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "vocabulary" in refused.value.details()
