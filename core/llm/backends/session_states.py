"""The evaluated context each session's last request left, kept so that its next turn starts from there.

A few llama.cpp contexts (slots) serve every session; on its own a context holds only what its request before
left, so sessions taking turns would each evaluate their whole history again. After each request the context's state is
kept under its session (the newest replaces that session's older one: it serves everything the older did), least
recently used dropped first beyond a byte budget. The backend starts a prompt from whichever state, or the live
context, serves most of it (core/llm/backends/context_reuse.py).
"""

from collections import OrderedDict

from llama_cpp import LlamaState


class SessionStates:
    def __init__(self, capacity_bytes: int):
        self.capacity_bytes = capacity_bytes
        self._states: OrderedDict[str, LlamaState] = OrderedDict()

    @property
    def size_bytes(self) -> int:
        return sum(state.llama_state_size for state in self._states.values())

    def __len__(self) -> int:
        return len(self._states)

    def states(self) -> list[LlamaState]:
        return list(self._states.values())

    def put(self, session: str, state: LlamaState) -> None:
        self._states.pop(session, None)
        self._states[session] = state
        while self._states and self.size_bytes > self.capacity_bytes:
            self._states.popitem(last=False)
