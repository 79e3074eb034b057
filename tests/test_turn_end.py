"""The end-of-turn model on its own: whole messages read whole, clauses left open do not, and a judgement is the
same whatever was judged before it (the prompt's cache is kept between judgements)."""

import pytest

from core.asr.turn_end import TRAILING_OFF, TurnTextModel


@pytest.fixture(scope="module")
def model():
    return TurnTextModel()


def test_whole_questions_read_more_complete_than_clauses_left_open(model):
    whole = [model.complete_probability(t) for t in ("What is your name?", "Tell me something about the ocean.")]
    open_ = [model.complete_probability(t) for t in ("I would like to", "Can you tell me about the", "So, and then I")]
    assert min(whole) > 10 * max(open_)


def test_a_judgement_does_not_depend_on_those_before_it(model):
    texts = ["I would like to", "I would like to book a table", "What is your name", "I would like"]
    fresh = []
    for text in texts:
        fresh.append(TurnTextModel(model.path).complete_probability(text))
    after_others = [model.complete_probability(text) for text in texts]
    assert after_others == pytest.approx(fresh, rel=1e-3, abs=1e-6)


def test_a_transcript_that_trails_off_is_told_apart():
    assert TRAILING_OFF.search("I would like to...") and TRAILING_OFF.search("my favourite colour is,")
    assert not TRAILING_OFF.search("What is your name?") and not TRAILING_OFF.search("Sure.")
