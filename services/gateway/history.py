"""The conversation's history: what is stored of it, and what of it the text engine is given with each turn.

- An entry is {"role": "user"|"assistant", "content": ..., "interrupted": bool}: a reply cut by barge-in is kept
  as what the user heard of it, marked interrupted (the text engine sees it end in a dash).
- What is sent with a turn is the newest part that fits a token budget and a message count (the text engine
  refuses more than it allows), dropped from the oldest end in whole blocks counted from the start of what is
  stored. While the same block boundary applies, what is sent only grows at its end, so the text engine's
  prompt keeps its cached prefix (its own blocks, services/llm/prompt.py, are a divisor of these). Only when
  one block alone is over the budget does the newest part that fits go instead.
- What is stored is capped the same way: in whole blocks from the oldest end. The persona is not history: the
  text engine puts it first in every prompt.
"""

BLOCK = 32  # messages dropped at a time: a multiple of the text engine's block of 8


def estimated_tokens(text: str) -> int:
    """An upper estimate without the model's tokenizer: English runs about four characters a token."""
    return len(text) // 3 + 8  # + the chat template's share per message


def entry(role: str, content: str, interrupted: bool = False) -> dict:
    return {"role": role, "content": content, "interrupted": interrupted}


def blocks_to_drop(count: int, limit: int) -> int:
    """How many of `count` messages to drop from the oldest end to keep at most `limit`: whole blocks."""
    over = count - limit
    return 0 if over <= 0 else -(-over // BLOCK) * BLOCK


def for_reply(history: list[dict], budget_tokens: int, max_messages: int) -> list[dict]:
    """The newest whole blocks of `history` within `budget_tokens` (estimated) and `max_messages`, as the text
    engine takes them."""
    start = blocks_to_drop(len(history), max_messages)
    costs = [estimated_tokens(m["content"]) for m in history]
    while start < len(history) and sum(costs[start:]) > budget_tokens:
        start += BLOCK
    if start >= len(history):  # a block alone is over the budget: as many of the newest as fit, then
        start = len(history)
        while start > 0 and sum(costs[start - 1 :]) <= budget_tokens:
            start -= 1
    return [{"role": m["role"], "content": m["content"] + (" —" if m.get("interrupted") else "")}
            for m in history[start:] if m["content"]]
