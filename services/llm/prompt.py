"""Builds the chat messages of one request: persona, history trimmed to the context window, the user's text."""

from collections.abc import Callable

from avatar.llm.v1 import llm_pb2
from services.common.errors import BadRequest
from services.llm.persona import Persona

_ROLES = {llm_pb2.ROLE_USER: "user", llm_pb2.ROLE_ASSISTANT: "assistant", llm_pb2.ROLE_SYSTEM: "system"}
_TEMPLATE_OVERHEAD = 8  # tokens the chat template adds per message


def build_messages(
    persona: Persona,
    history: list[llm_pb2.ChatMessage],
    user_text: str,
    count_tokens: Callable[[str], int],
    budget: int,
    facts: list[str] = (),
) -> list[dict]:
    """Oldest history is dropped first until the prompt fits in `budget` tokens."""
    system = {"role": "system", "content": persona.system_message(facts)}
    user = {"role": "user", "content": user_text}
    used = sum(count_tokens(m["content"]) + _TEMPLATE_OVERHEAD for m in (system, user))
    if used > budget:
        raise BadRequest(f"the user text alone needs {used} tokens; the limit is {budget}")
    kept: list[dict] = []
    for message in reversed(history):
        if message.role not in _ROLES:
            raise BadRequest("every history message needs a role (user, assistant or system)")
        cost = count_tokens(message.content) + _TEMPLATE_OVERHEAD
        if used + cost > budget:
            break
        used += cost
        kept.append({"role": _ROLES[message.role], "content": message.content})
    return [system, *reversed(kept), user]
