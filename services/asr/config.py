"""ASR process settings (env prefix ASR_)."""

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class AsrSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ASR_", env_file=".env", extra="ignore")

    port: int = 50051
    metrics_port: int = 9101
    # whisper: CTranslate2 Whisper (faster-whisper); nemo: a NeMo .nemo checkpoint (CTC, RNNT or hybrid).
    backend: Literal["whisper", "nemo"] = "whisper"
    # whisper: a CTranslate2 folder (e.g. a fine-tuned export), empty = the packaged Whisper base; nemo: a .nemo file.
    model_path: str = ""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(default=2, ge=1)
    beam_size: int = Field(default=1, ge=1, le=10)
    # Language when the client names none; "auto" detects it.
    language: str = "en"
    end_of_turn_silence_ms: int = Field(default=500, ge=100, le=5000)
    partial_interval_ms: int = Field(default=500, ge=100, le=5000)
    max_chunk_bytes: int = Field(default=256 * 1024, ge=1024)
