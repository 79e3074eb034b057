"""SDA process settings (env prefix SDA_)."""

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class SdaSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SDA_", env_file=".env", extra="ignore")

    port: int = 50054
    metrics_port: int = 9104
    # The default avatar's generator file (it carries its model config and its face).
    checkpoint_path: str = "core/sda/checkpoints/default.pt"
    # Made avatars: <avatars_dir>/<avatar_id>/generator.pt
    avatars_dir: str = "var/avatars"
    # auto: the GPU when torch sees one, else the CPU; cuda: the GPU or refuse to start.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(default=2, ge=1)
    jpeg_quality: int = Field(default=80, ge=1, le=100)
    max_chunk_bytes: int = Field(default=512 * 1024, ge=1024)
    max_face_image_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Longest frame side a client may ask for.
    max_frame_side: int = Field(default=1024, ge=64)
