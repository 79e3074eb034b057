"""Keeps a streamed reply speakable: markup characters that a voice would read out are dropped as they stream."""

import re

_MARKUP = re.compile(r"[*_`#~|<>\[\]{}]+|https?://\S+")


def speakable(delta: str) -> str:
    return _MARKUP.sub("", delta)
