"""The words a session's recogniser should lean towards: the avatar's name and the proper nouns of what it knows
(people, places, products), which a general model mishears most ("Gregson" as "gregs in")."""

import re
from collections import Counter
from pathlib import Path

from core.avatar_bundle import AvatarBundle

MAX_TERMS = 64
MAX_TERM_CHARS = 64
_KNOWLEDGE_TERMS = 40  # the most frequent proper nouns of an avatar's knowledge
_KNOWLEDGE_CHARS = 200_000  # read of each knowledge file
# A run of capitalised words ("Mount Kilimanjaro", "Anneliese") not opening a sentence.
_PROPER = re.compile(r"(?<![.!?:\n]\s)(?<!^)\b([A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*)")
_COMMON = {"I", "I'm", "I've", "I'll", "I'd", "OK", "Mr", "Mrs", "Ms", "Dr", "The", "A", "An"}


def proper_nouns(text: str, limit: int = _KNOWLEDGE_TERMS) -> list[str]:
    """The capitalised names of `text` that do not open a sentence, most frequent first."""
    counts = Counter(match.group(1) for match in _PROPER.finditer(text) if match.group(1) not in _COMMON)
    return [term for term, _ in counts.most_common(limit) if len(term) <= MAX_TERM_CHARS]


def avatar_vocabulary(name: str, knowledge: Path | None) -> list[str]:
    """The avatar's name, then its knowledge's proper nouns."""
    text = "\n".join(f.read_text(errors="replace")[:_KNOWLEDGE_CHARS]
                     for f in (AvatarBundle.knowledge_files(knowledge) if knowledge else []))
    return merged([name], proper_nouns(text))


def merged(*vocabularies: list[str]) -> list[str]:
    """The terms of all, each once (the first spelling kept), at most MAX_TERMS."""
    seen: dict[str, str] = {}
    for term in (t.strip() for vocabulary in vocabularies for t in vocabulary):
        if term and len(term) <= MAX_TERM_CHARS:
            seen.setdefault(term.lower(), term)
    return list(seen.values())[:MAX_TERMS]
