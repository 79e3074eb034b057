"""When speech over a reply counts as an interruption: words the recogniser heard, not fillers and backchannels.

A cough, a click or a door rarely passes the ASR's voice detector; a hum or a "mm-hmm" does, and is the listener
saying "go on", not "stop". Only other words cancel a reply (at least the session's `barge_in_min_words`).
"""

import re

BACKCHANNELS = frozenset(
    "ah aha eh er erm hm hmm hmmm huh mhm mm mmm mm-hmm oh ooh uh uh-huh uhm um umm yeah-yeah".split()
)


def interrupting_words(transcript: str) -> int:
    """How many words of `transcript` say something: fillers and backchannels do not count."""
    words = re.sub(r"[^\w'\- ]+", " ", transcript.lower()).split()
    return sum(1 for word in words if word.strip("-'") not in BACKCHANNELS)


def interrupts(transcript: str, min_words: int) -> bool:
    return interrupting_words(transcript) >= max(1, min_words)
