"""Coqui TTS VITS voices (e.g. fine-tuned by `pipelines.tts.train`): a folder with `config.json` + `model.pth`.

Phoneme timings come from the model's own duration predictor: each input token's frame count times the hop.
"""

import logging
from pathlib import Path

import numpy as np

from core.tts.backends.base_backend import SILENT_MARKS, Phoneme, Utterance, VoiceSpec

log = logging.getLogger(__name__)
# It notes at INFO, for every sentence, that it expands abbreviations only for named languages.
logging.getLogger("TTS.tts.utils.text.cleaners").setLevel(logging.WARNING)

CONFIG = "config.json"
WEIGHTS = "model.pth"


def is_coqui_voice(folder: Path) -> bool:
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


class CoquiVitsBackend:
    def __init__(self, folder: str, use_cuda: bool = False, name: str = ""):
        self._folder = Path(folder)
        if not is_coqui_voice(self._folder):
            raise FileNotFoundError(f"{folder} is not a Coqui voice: it needs {CONFIG} and {WEIGHTS}")
        self._device = "cuda" if use_cuda else "cpu"
        self._model = None
        self.voice = VoiceSpec(
            name=name or self._folder.name, language="en", sample_rate=22050, backend="coqui", gives_phoneme_timings=True
        )

    def load(self) -> None:
        import torch
        from TTS.tts.configs.vits_config import VitsConfig
        from TTS.tts.models.vits import Vits

        config = VitsConfig()
        config.load_json(str(self._folder / CONFIG))
        config.model_args.init_discriminator = False
        model = Vits(config)
        model.load_checkpoint(config, str(self._folder / WEIGHTS), eval=True, strict=False)
        self._model = model.to(self._device)
        self._torch = torch
        self.voice = VoiceSpec(
            name=self.voice.name,
            language=config.phoneme_language or "en",
            sample_rate=config.audio.sample_rate,
            backend="coqui",
            gives_phoneme_timings=True,
        )
        self._hop = config.audio.hop_length
        self.synthesize("Hello.", 1.0)
        log.info("loaded coqui VITS voice %s (%d Hz)", self.voice.name, self.voice.sample_rate)

    def synthesize(self, text: str, speaking_rate: float) -> Utterance:
        torch, model = self._torch, self._model
        ids = model.tokenizer.text_to_ids(text)
        if not ids:
            return Utterance(np.zeros(0, dtype=np.float32), ())
        model.length_scale = 1.0 / speaking_rate
        with torch.inference_mode():
            outputs = model.inference(torch.tensor([ids], device=self._device))
        audio = outputs["model_outputs"].squeeze().float().cpu().numpy()
        durations = outputs["durations"].squeeze().cpu().numpy().reshape(-1)
        return Utterance(audio.astype(np.float32), tuple(self._timings(ids, durations)))

    def _timings(self, ids: list[int], durations: np.ndarray) -> list[Phoneme]:
        """Blank, pad and stress tokens carry no mouth shape: their frames go to the phoneme after them."""
        characters = self._model.tokenizer.characters
        silent = SILENT_MARKS | {characters.blank, characters.pad, characters.bos, characters.eos}
        seconds_per_frame = self._hop / self.voice.sample_rate
        result, frame, carried = [], 0.0, 0.0
        for token, frames in zip(ids, durations):
            symbol = characters.id_to_char(token)
            if symbol in silent or not symbol.strip():
                carried += frames
                continue
            start = frame
            frame += carried + frames
            carried = 0.0
            result.append(Phoneme(symbol, float(start * seconds_per_frame), float(frame * seconds_per_frame)))
        return result
