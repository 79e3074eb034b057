"""The words of a transcript that say something: fillers and backchannels ("um", "hmm", "uh-huh") do not.

Two rules of the conversation read transcripts this way:
- barge-in: speech over a reply stops it only with words the recogniser is not wholly unsure of (a cough, a click or
  a door rarely passes the ASR's voice detector, and when one does Whisper may read it as a word — "you", "F" —
  it gives a probability of a few hundredths; a hum, a "mm-hmm" or a "yeah" is the listener saying "go on", not
  "stop");
- speculation: the reply started on the transcript decoded at a pause is kept when the final says the same words,
  whatever fillers, case or punctuation differ.
"""

import re


def _drawn_out(word: str) -> str:
    """The word with every run of one letter made one letter: "hmmmm" and "hmm" read the same, as do "ummm" and
    "um" (a recogniser writes a long hum with as many letters as it likes)."""
    return re.sub(r"(\w)\1+", r"\1", word)


BACKCHANNELS = frozenset(_drawn_out(w) for w in "ah aha eh er erm hm huh mhm mm mm-hmm oh ooh uh uh-huh uhm um".split())


def meaningful_words(transcript: str) -> list[str]:
    words = re.sub(r"[^\w'\- ]+", " ", transcript.lower()).split()
    return [w for w in (word.strip("-'") for word in words) if w and _drawn_out(w) not in BACKCHANNELS]


# Words a listener says to mean "I follow, go on" (a reply plays on when they are all that was said over it; after
# a reply, "Yes." is an answer like any other).
ACKNOWLEDGEMENTS = frozenset("alright exactly okay ok right sure true yeah yes yep yup".split())


def interrupts(transcript: str, min_words: int) -> bool:
    """Whether speech heard over a reply stops it: at least `min_words` (and at least one) meaningful words, not
    all of them acknowledgements ("Yeah.", "Right, right." are the listener following; "Right, but why?" is not)."""
    words = meaningful_words(transcript)
    return len(words) >= max(1, min_words) and any(w not in ACKNOWLEDGEMENTS for w in words)

