"""Which words heard over a reply stop it: fillers and backchannels do not, anything else does."""

import pytest

from services.gateway.barge_in import interrupting_words, interrupts

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("heard", ["", "Hmm.", "Mm-hmm.", "uh-huh", "Um, uh...", "Oh!", "mhm mhm"])
def test_backchannels_and_fillers_do_not_interrupt(heard):
    assert interrupting_words(heard) == 0 and not interrupts(heard, 1)


@pytest.mark.parametrize("heard, words", [("Stop.", 1), ("Hmm, wait a second", 3), ("No, no!", 2)])
def test_other_words_do(heard, words):
    assert interrupting_words(heard) == words and interrupts(heard, 1)


def test_the_session_threshold_counts_words_and_zero_means_any_word():
    assert not interrupts("Wait.", 2) and interrupts("Wait, stop.", 2)
    assert interrupts("Stop.", 0) and not interrupts("Hmm.", 0)
