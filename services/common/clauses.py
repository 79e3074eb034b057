"""Where speech synthesis cuts a reply's text into clauses: the voice service cuts there
(services/tts/clause_splitter.py), and the gateway holds text back only there (services/gateway/reply_processors.py
`Paced`), so speech synthesis is never left waiting with half a clause."""

# Sentence punctuation and any closing quote or bracket after it: a boundary once a space follows.
SENTENCE_END = r"[.!?…]+[\"')\]]*"
MAX_CLAUSE_CHARS = 220  # text this long without a boundary is cut between words
