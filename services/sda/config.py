"""SDA process settings (env prefix SDA_)."""

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from core.avatar_bundle import AvatarsDir
from services.common.settings import ServiceSettings
from services.sda.video_encoder import VideoQuality


class SdaSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SDA_", env_file=".env", extra="ignore")

    port: int = 50054
    metrics_port: int = 9104
    # The default avatar's generator file (it carries its model config and its face).
    checkpoint_path: str = "core/sda/checkpoints/default.pt"
    # Made avatars: <avatars_dir>/<avatar_id>/generator.pt
    avatars_dir: AvatarsDir
    # auto: the GPU when torch sees one, else the CPU; cuda: the GPU or refuse to start.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads of the model's steps. One by default: torch's threads wait for each other spinning, so beside
    # other busy stages two stall (this 2-core machine with one core busy elsewhere: 26 frames a second on two
    # threads, 136 on one; idle, 107 and 116).
    threads: int = Field(default=1, ge=1)
    jpeg_quality: int = Field(default=80, ge=1, le=100)
    # What a frame shows: the head, centred, with `head_margin` (a share of the face's size) of the photo around it
    # on every side, at `frame_size` px square; or the whole photo at its own size.
    framing: Literal["head", "photo"] = "head"
    head_margin: float = Field(default=0.3, ge=0, le=5)
    frame_size: int = Field(default=512, ge=64, le=2048)
    # Encoded video (H.264/VP8, when a client asks for it): H.264's constant quality (lower: better, larger),
    # a bitrate ceiling per stream, and the longest run of frames between keyframes.
    video_crf: int = Field(default=21, ge=0, le=51)
    video_max_kbps: int = Field(default=1400, ge=100)
    keyframe_interval_s: float = Field(default=2.0, gt=0)
    max_chunk_bytes: int = Field(default=512 * 1024, ge=1024)
    max_face_image_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Longest frame side a client may ask for.
    max_frame_side: int = Field(default=1024, ge=64)

    def video_quality(self) -> VideoQuality:
        return VideoQuality(self.video_crf, self.video_max_kbps, self.keyframe_interval_s)
