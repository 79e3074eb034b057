"""Which words of a transcript count: fillers and backchannels do not stop a reply or change a speculated one."""

import pytest

from services.gateway.speculation import Speculation
from services.gateway.spoken_words import interrupts, meaningful_words

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("heard", ["", "Hmm.", "Mm-hmm.", "uh-huh", "Um, uh...", "Oh!", "mhm mhm",
                                   "Hmmmmmmmmmmmmmmmmmmmmmmmm", "Ummmm...", "Mmmm-hmmm", "Ahhh."])
def test_backchannels_and_fillers_do_not_interrupt(heard):
    assert meaningful_words(heard) == [] and not interrupts(heard, 1)


@pytest.mark.parametrize("heard, words", [("Stop.", 1), ("Hmm, wait a second", 3), ("No, no!", 2),
                                          ("Too good!", 2), ("Hmmm, all right", 2)])
def test_other_words_do(heard, words):
    assert len(meaningful_words(heard)) == words and interrupts(heard, 1)


@pytest.mark.parametrize("heard", ["Yeah.", "Right, right.", "Okay.", "Yes, exactly.", "Uh-huh, sure."])
def test_a_listener_following_along_does_not_interrupt(heard):
    assert not interrupts(heard, 1)


@pytest.mark.parametrize("heard", ["Right, but why?", "Yeah, stop.", "Okay, tell me about Rome instead.", "No."])
def test_an_acknowledgement_with_anything_more_does(heard):
    assert interrupts(heard, 1)


def test_the_session_threshold_counts_words_and_zero_means_any_word():
    assert not interrupts("Wait.", 2) and interrupts("Wait, stop.", 2)
    assert interrupts("Stop.", 0) and not interrupts("Hmm.", 0)


@pytest.mark.parametrize("paused, final, kept", [
    ("What is your name", "What is your name?", True),
    ("um what is your name", "What is your name?", True),
    ("What is your name?", "What is your name, uh", True),
    ("What is your", "What is your name?", False),
    ("What is your name?", "What is your game?", False),
])
def test_a_speculated_reply_is_kept_when_the_final_says_the_same_words(paused, final, kept):
    speculation = Speculation.__new__(Speculation)  # the rule alone, without starting an LLM call
    speculation.text = paused
    assert speculation.matches(final) is kept
