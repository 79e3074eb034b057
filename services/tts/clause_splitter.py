"""Cuts a stream of text deltas into clauses that can be spoken on their own, as early as it sounds natural.

A clause ends at sentence punctuation followed by a space, or at a comma/semicolon/colon/dash once enough words
are pending. The first clause of a reply may be cut at a shorter length, so the first audio comes early, and,
where its sentence runs on without punctuation, before a word that opens a phrase ("…a wonderful time | with your
family", "…an old tradition | that has been…"): a small text engine's first sentences run to 15-25 words without a
comma, and waiting for the whole of one held the first audio back 0.4-0.8 s on a busy 2-core machine. Later clauses
wait for longer pieces, which sound more natural.
"""

import re

from services.common.clauses import MAX_CLAUSE_CHARS, SENTENCE_END

# A boundary is punctuation followed by whitespace: "3.5" or "e.g." mid-token is not one.
_SENTENCE_END = re.compile(SENTENCE_END + r"\s")
_SOFT_END = re.compile(r"[,;:—–]\s|\s-\s")
_ABBREVIATION_TAIL = re.compile(r"\b(?:mr|mrs|ms|dr|prof|st|jr|sr|vs|etc|e\.g|i\.e|no|approx|dept)\.\s$", re.I)
# Words a speaker may pause before: subordinating conjunctions, relative pronouns and prepositions that open a
# phrase of their own ("of", "to" and "and" bind too tightly: "a cup | of tea", "want | to go", "vast | and deep").
# Matched once the word is whole (a space follows it).
_PHRASE_OPENER = re.compile(
    r"\s(?=(?:because|since|although|though|while|when|where|whereas|unless|until|that|which|who|whose|with|"
    r"without|from|for|in|on|at|into|about|by|through|across|over|under|after|before|during|around|between|"
    r"like)\s)", re.I)


class ClauseSplitter:
    def __init__(self, first_min_words: int = 3, min_words: int = 6, first_phrase_words: int = 5,
                 max_chars: int = MAX_CLAUSE_CHARS):
        """`first_min_words`: the first clause's least words before a comma; `min_words`: a later one's;
        `first_phrase_words`: the first clause's least words before a phrase-opening word."""
        self._first_min_words = first_min_words
        self._min_words = min_words
        self._first_phrase_words = first_phrase_words
        self._max_chars = max_chars
        self._pending = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        """Add a text delta; return the clauses that are now complete."""
        self._pending += delta
        clauses = []
        while (clause := self._next_clause()) is not None:
            clauses.append(clause)
        return clauses

    def flush(self) -> str | None:
        """Return whatever is pending as a final clause."""
        clause, self._pending = self._pending.strip(), ""
        if clause:
            self._emitted += 1
            return clause
        return None

    def _next_clause(self) -> str | None:
        first = self._emitted == 0
        min_words = self._first_min_words if first else self._min_words
        cut = None
        for match in _SENTENCE_END.finditer(self._pending):
            if not _ABBREVIATION_TAIL.search(self._pending[: match.end()]):
                cut = match.end()
                break
        for match in _SOFT_END.finditer(self._pending):
            if (cut is None or match.end() < cut) and len(self._pending[: match.end()].split()) >= min_words:
                cut = match.end()
                break
        if cut is None and first:
            cut = self._phrase_end()
        if cut is None and len(self._pending) > self._max_chars:
            cut = self._pending.rfind(" ", 0, self._max_chars) + 1 or self._max_chars
        if cut is None:
            return None
        clause, self._pending = self._pending[:cut].strip(), self._pending[cut:]
        if not clause:
            return None
        self._emitted += 1
        return clause

    def _phrase_end(self) -> int | None:
        """Where the pending text first has a phrase-opening word after enough words of its own."""
        for match in _PHRASE_OPENER.finditer(self._pending):
            if len(self._pending[: match.start()].split()) >= self._first_phrase_words:
                return match.start() + 1
        return None
