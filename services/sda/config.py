"""SDA process settings (env prefix SDA_)."""

from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class SdaSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SDA_", env_file=".env", extra="ignore")

    port: int = 50054
    metrics_port: int = 9104
    # The generator checkpoint (it carries its own model config).
    checkpoint_path: str = "services/sda/checkpoints/default.pt"
