"""The Whisper backend's loop cut: a phrase said again and again to the end of a decode is one saying."""

import pytest

from core.asr.backends.base_backend import Word
from core.asr.backends.base_backend import cut_loop

pytestmark = pytest.mark.unit


def words(text: str) -> list[Word]:
    return [Word(t, i * 0.3, i * 0.3 + 0.2, 0.9) for i, t in enumerate(text.split())]


def said(kept: list[Word]) -> str:
    return " ".join(w.text for w in kept)


def test_a_question_repeated_to_the_end_is_kept_once():
    assert said(cut_loop(words("What is your name? What is your name? What is your"))) == "What is your name?"
    assert said(cut_loop(words("Hello, how are you today? Hello, how are you today?"))) == "Hello, how are you today?"


def test_a_loop_after_other_words_keeps_what_came_before_it():
    assert said(cut_loop(words("Well then. Tell me more. Tell me more. Tell me"))) == "Well then. Tell me more."


def test_repetition_that_is_not_a_loop_to_the_end_is_left_alone():
    for text in ("I think I think we should go home.", "no no", "very very good", "Go, go, go!",
                 "What is the time? I asked what is the"):
        assert said(cut_loop(words(text))) == text


def test_a_quick_partial_cut_mid_speech_loses_a_single_word_loop_too():
    assert said(cut_loop(words("Wait wait"), shortest=1)) == "Wait"
    assert said(cut_loop(words("Wait, stop. stop stop"), shortest=1)) == "Wait, stop."
    assert said(cut_loop(words("Wait wait"))) == "Wait wait"  # a thorough decode leaves it to the stutter check
