"""The words a session's recogniser leans towards: the avatar's name, its knowledge's names, the user's own."""

import json

import pytest
from pydantic import ValidationError

from core.asr.vocabulary import MAX_TERMS, merged, proper_nouns
from services.gateway.conversation import session_vocabulary
from services.gateway.protocol import Hello

pytestmark = pytest.mark.unit


def test_the_names_of_a_text_are_found_and_words_opening_a_sentence_are_not():
    text = ("The museum opened in 1902. Visitors from Nairobi often ask Anneliese about it.\n"
            "Gregson built the Grand Hall. Later, Gregson sold it to the city of Nairobi.")
    names = proper_nouns(text)
    assert names[0] == "Nairobi" and sorted(names) == ["Anneliese", "Grand Hall", "Gregson", "Nairobi"]


def test_terms_are_merged_once_each_and_capped():
    assert merged(["Ava", "nairobi"], ["Nairobi", "Gregson", " "]) == ["Ava", "nairobi", "Gregson"]
    assert len(merged([f"term{i}" for i in range(200)])) == MAX_TERMS


def test_a_session_leans_to_the_users_terms_the_avatars_name_and_its_knowledges_names(tmp_path):
    avatar = tmp_path / "anna"
    (avatar / "knowledge").mkdir(parents=True)
    (avatar / "persona.json").write_text(json.dumps({"name": "Anneliese"}))
    (avatar / "knowledge" / "trip.txt").write_text("We climbed Kilimanjaro with Siobhan in March.")
    assert session_vocabulary(str(tmp_path), "anna", ["Zorblax"]) == (
        "Zorblax", "Anneliese", "Kilimanjaro", "Siobhan", "March")
    assert session_vocabulary(str(tmp_path), "default", []) == ("Ava",)


@pytest.mark.parametrize("vocabulary", [[f"t{i}" for i in range(MAX_TERMS + 1)], ["x" * 65], [""]])
def test_a_hello_with_a_vocabulary_too_large_is_refused(vocabulary):
    with pytest.raises(ValidationError):
        Hello.model_validate({"type": "hello", "version": 1, "settings": {"vocabulary": vocabulary}})

