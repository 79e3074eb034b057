"""TTS process settings (env prefix TTS_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class TtsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TTS_", env_file=".env", extra="ignore")

    port: int = 50053
    metrics_port: int = 9103
    # A Piper voice (.onnx with its .onnx.json beside it); empty = the packaged en_US-joe-medium.
    voice_path: str = ""
    # A folder of extra Piper voices (*.onnx + *.onnx.json), each selectable by its file name.
    voices_dir: str = ""
    use_cuda: bool = False
    chunk_ms: int = Field(default=200, ge=20, le=2000)
    max_text_chars: int = Field(default=2000, ge=1, description="longest single text message")
    max_stream_chars: int = Field(default=20000, ge=1, description="most text one stream may carry")
