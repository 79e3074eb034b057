"""TTS process settings (env prefix TTS_)."""

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from core.avatar_bundle import AvatarsDir
from core.provenance.watermark import WatermarkDir
from services.common.settings import ServiceSettings


class TtsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TTS_", env_file=".env", extra="ignore")

    port: int = 50053
    metrics_port: int = 9103
    # The default voice's engine: "piper" (ONNX voices) or "coqui" (Coqui VITS, e.g. fine-tuned by pipelines.tts).
    backend: Literal["piper", "coqui"] = "piper"
    # piper: a voice .onnx with its .onnx.json beside it, empty = the packaged en_US-joe-medium;
    # coqui: a folder holding config.json + model.pth (required).
    voice_path: str = ""
    # A folder of extra voices, each selectable by name: Piper files (<name>.onnx + .onnx.json) and
    # Coqui voice folders (<name>/config.json + model.pth).
    voices_dir: str = ""
    # Published avatars (pipelines publish): <avatars_dir>/<avatar_id>/voice/ is the voice named <avatar_id>.
    avatars_dir: AvatarsDir
    use_cuda: bool = False
    # Below the frames' CPU priority where it shares cores with animation (services/common/cpu_priority.py).
    nice: int = Field(default=10, ge=0, le=19)
    # Every clause's audio carries an inaudible watermark that says it was generated (core.provenance); turning
    # it off is logged as a warning at start. The model's files: WATERMARK_DIR (made by `make setup` / the image).
    watermark: bool = True
    watermark_dir: WatermarkDir
    # How strongly: 1 is the model as trained, which the gateway's 24 kbit/s Opus wipes from some voices (espeak's:
    # found in 0 of 12 clips); 1.5 survives it in all (docs/benchmarks.md, provenance), 2.4 dB louder.
    watermark_strength: float = Field(default=1.5, ge=0.5, le=3.0)
    chunk_ms: int = Field(default=200, ge=20, le=2000)
    max_text_chars: int = Field(default=2000, ge=1, description="longest single text message")
    max_stream_chars: int = Field(default=20000, ge=1, description="most text one stream may carry")

    @model_validator(mode="after")
    def _coqui_needs_a_voice(self):
        if self.backend == "coqui" and not self.voice_path:
            raise ValueError("TTS_BACKEND=coqui needs TTS_VOICE_PATH (a folder with config.json + model.pth)")
        return self
