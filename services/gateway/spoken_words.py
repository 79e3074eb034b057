"""The words of a transcript that say something: fillers and backchannels ("um", "hmm", "uh-huh") do not.

Two rules of the conversation read transcripts this way:
- barge-in: speech over a reply stops it only with words (a cough, a click or a door rarely passes the ASR's voice
  detector; a hum or a "mm-hmm" does, and is the listener saying "go on", not "stop");
- speculation: the reply started on the transcript decoded at a pause is kept when the final says the same words,
  whatever fillers, case or punctuation differ.
"""

import re

BACKCHANNELS = frozenset(
    "ah aha eh er erm hm hmm hmmm huh mhm mm mmm mm-hmm oh ooh uh uh-huh uhm um umm".split()
)


def meaningful_words(transcript: str) -> list[str]:
    words = re.sub(r"[^\w'\- ]+", " ", transcript.lower()).split()
    return [w for w in (word.strip("-'") for word in words) if w and w not in BACKCHANNELS]


def interrupts(transcript: str, min_words: int) -> bool:
    """Whether speech heard over a reply stops it: at least `min_words` (and at least one) meaningful words."""
    return len(meaningful_words(transcript)) >= max(1, min_words)
