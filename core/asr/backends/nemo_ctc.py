"""NeMo ASR checkpoints (.nemo: CTC, RNNT or hybrid) — e.g. the fine-tuned model of the pipelines — with word
timings from the decoder's timestamps and word confidences from the frame posteriors."""

import copy
import logging

import numpy as np

from core.asr.backends.base_backend import Effort, Word

log = logging.getLogger(__name__)


class NemoBackend:
    final_differs = False  # one greedy decode, whatever the effort

    def __init__(self, model_path: str, device: str = "auto"):
        if not model_path.endswith(".nemo"):
            raise ValueError(f"the NeMo backend needs a .nemo file, got {model_path!r}")
        self._path = model_path
        self._device = device
        self.name = f"nemo:{model_path.rsplit('/', 1)[-1]}"
        self.sample_rate = 16000
        self._model = None

    def load(self) -> None:
        import torch
        from nemo.collections.asr.models import ASRModel
        from omegaconf import open_dict

        device = self._device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = ASRModel.restore_from(self._path, map_location=device)
        model.eval()
        decoding = copy.deepcopy(model.cfg.decoding)
        with open_dict(decoding):
            decoding.preserve_alignments = True  # frame log-probabilities, for word confidences
        model.change_decoding_strategy(decoding, verbose=False)
        self.sample_rate = int(model.cfg.sample_rate)
        self._model = model
        log.info("loaded %s on %s (%s)", self.name, device, type(model).__name__)
        self.transcribe(np.zeros(self.sample_rate, dtype=np.float32), "", None)

    def transcribe(self, audio: np.ndarray, prompt: str, language: str | None, effort: Effort = "final",
                   vocabulary: tuple[str, ...] = ()) -> list[Word]:
        """`prompt`, `language`, `effort` and `vocabulary` do not apply: a NeMo model is trained for one language,
        without prompts, and decodes greedily."""
        hypothesis = self._model.transcribe([audio], batch_size=1, timestamps=True, verbose=False)[0]
        if isinstance(hypothesis, list):  # RNNT models return n-best lists
            hypothesis = hypothesis[0]
        stamps = (hypothesis.timestamp or {}).get("word", [])
        probs = self._frame_confidence(hypothesis)
        words = []
        for stamp in stamps:
            first, last = int(stamp["start_offset"]), int(stamp["end_offset"])
            confidence = float(probs[first : last + 1].mean()) if probs is not None and last >= first else 1.0
            words.append(Word(stamp["word"], float(stamp["start"]), float(stamp["end"]), min(max(confidence, 0.0), 1.0)))
        return words

    @staticmethod
    def _frame_confidence(hypothesis) -> np.ndarray | None:
        """Probability of the best token in each frame (CTC alignments hold the frame log-probabilities)."""
        alignments = hypothesis.alignments
        if isinstance(alignments, tuple) and len(alignments) == 2 and getattr(alignments[0], "ndim", 0) == 2:
            return np.exp(alignments[0].float().max(dim=-1).values.cpu().numpy())
        return None
