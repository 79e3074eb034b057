"""The silences that may end a turn, in ms: what the recogniser takes, and so what the gateway's sessions and the
ASR's own settings may ask for."""

from typing import Annotated

from pydantic import Field

SHORTEST_MS = 100
LONGEST_MS = 5000

SilenceMs = Annotated[int, Field(ge=SHORTEST_MS, le=LONGEST_MS)]
