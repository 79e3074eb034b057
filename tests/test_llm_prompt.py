"""The prompt a session sends turn after turn begins with the prompt of its turn before (so llama.cpp reuses the
evaluated prefix), whatever facts each question retrieves and however long the conversation grows."""

import pytest
from avatar.llm.v1 import llm_pb2

from core.llm.persona import Persona
from services.llm.prompt import build_messages

pytestmark = pytest.mark.unit


def count_words(text: str) -> int:
    return len(text.split())


def exchange(i: int) -> list[llm_pb2.ChatMessage]:
    return [llm_pb2.ChatMessage(role=llm_pb2.ROLE_USER, content=f"question number {i} " + "word " * 20),
            llm_pb2.ChatMessage(role=llm_pb2.ROLE_ASSISTANT, content=f"answer number {i} " + "reply " * 40)]


def prompt(history, text="What now?", facts=(), history_budget=None):
    return build_messages(Persona(), history, text, count_words, budget=2000, facts=list(facts),
                          history_budget=history_budget)


def test_retrieved_facts_sit_beside_the_question_not_in_the_system_message():
    with_facts = prompt([], "What is the cat called?", facts=["The cat is named Pumpernickel."])
    without = prompt([], "Where is the harbour?")
    assert with_facts[0] == without[0], "the system message changed with the facts"
    assert "Pumpernickel" in with_facts[-1]["content"] and "What is the cat called?" in with_facts[-1]["content"]


def prefix_kept(before: list[dict], after: list[dict]) -> bool:
    """`after` starts with every message of `before` but its last (the question, with its facts)."""
    return after[: len(before) - 1] == before[:-1]


def test_a_growing_conversation_keeps_its_prefix_until_a_whole_block_is_dropped():
    history: list[llm_pb2.ChatMessage] = []
    prompts = []
    for i in range(40):
        prompts.append(prompt(history, facts=[f"fact {i}"], history_budget=600))
        history += exchange(i)
    stable = [prefix_kept(a, b) for a, b in zip(prompts, prompts[1:])]
    assert all(sum(len(m["content"].split()) for m in p[1:-1]) <= 600 for p in prompts)
    # Most turns extend the turn before; the prefix is only rebuilt when a block of old history is dropped.
    assert sum(stable) >= 0.7 * len(stable), stable
    assert len(prompts[-1]) < 2 * 40 + 2, "the history was never trimmed"


def test_history_over_the_context_is_trimmed_from_the_oldest_end():
    history = [m for i in range(100) for m in exchange(i)]
    messages = prompt(history)
    assert messages[-2]["content"].startswith("answer number 99")
    assert sum(len(m["content"].split()) for m in messages) <= 2000


def test_an_exchange_whose_reply_gave_the_question_back_is_left_out():
    said = [llm_pb2.ChatMessage(role=llm_pb2.ROLE_USER, content="Hello! How are you today?"),
            llm_pb2.ChatMessage(role=llm_pb2.ROLE_ASSISTANT, content="Hello! How are you today?"),
            llm_pb2.ChatMessage(role=llm_pb2.ROLE_USER, content="What is your name?"),
            llm_pb2.ChatMessage(role=llm_pb2.ROLE_ASSISTANT, content="I'm Ava, nice to meet you.")]
    messages = prompt(said)
    assert [m["content"] for m in messages[1:-1]] == ["What is your name?", "I'm Ava, nice to meet you."]
