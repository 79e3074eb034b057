"""Where a reply's text is cut into clauses the voice speaks one by one: the first early, none mid-phrase."""

import re

import pytest

from services.tts.clause_splitter import ClauseSplitter

pytestmark = pytest.mark.unit


def clauses(reply: str) -> list[str]:
    """The clauses of `reply` given as a text engine writes it: a word at a time, each with its leading space."""
    splitter = ClauseSplitter()
    out = [c for token in re.findall(r"\s*\S+", reply) for c in splitter.push(token)]
    return out + [rest] if (rest := splitter.flush()) else out


def test_a_long_first_sentence_is_cut_where_a_phrase_opens():
    assert clauses("I'm so glad you're having a wonderful time with your family. I've always loved it here.") == [
        "I'm so glad you're having a wonderful time", "with your family.", "I've always loved it here."]
    assert clauses("The reason is a beautiful and ancient tradition that has been passed down for ages.")[0] == (
        "The reason is a beautiful and ancient tradition")


def test_the_first_clause_keeps_its_words_together_until_a_phrase_opener_is_whole():
    splitter = ClauseSplitter()
    assert [c for t in ["I", " am", " so", " happy", " to", " be", " here", " with"] for c in splitter.push(t)] == []
    assert splitter.push("out") == []  # "without" is not "with"
    assert splitter.push(" you") == ["I am so happy to be here"]


def test_words_that_bind_tightly_or_come_too_soon_are_no_place_to_cut():
    assert clauses("A cup of tea and a slice of cake would be lovely now.") == [
        "A cup of tea and a slice of cake would be lovely now."]
    assert clauses("Go with it and see what happens next to the boat.") == [
        "Go with it and see what happens next to the boat."]


def test_only_the_first_clause_is_cut_at_a_phrase():
    later = "Then it rained on the fields for a week without a break."
    assert clauses("Yes, of course. " + later) == ["Yes, of course.", later]


def test_punctuation_still_cuts_before_a_phrase_opener_would():
    assert clauses("The ocean is a vast and mysterious place, full of wonders from the deep.") == [
        "The ocean is a vast and mysterious place,", "full of wonders from the deep."]
