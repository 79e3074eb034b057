"""Process settings shared by every gRPC service; each service subclasses with its own env prefix."""

import logging

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)


class ServiceSettings(BaseSettings):
    """Settings common to every stage. Subclasses set `model_config` with their env prefix."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # The stages speak unauthenticated gRPC: by default only this machine reaches them. The images set 0.0.0.0
    # (their network is the compose project's or the pod's).
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    metrics_port: int = Field(ge=0, le=65535, description="Prometheus /metrics port; 0 disables it")
    log_level: str = "INFO"
    log_json: bool = False
    # A request message larger than this is refused with INVALID_ARGUMENT.
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Streams served at once; more are refused with RESOURCE_EXHAUSTED.
    max_concurrent_streams: int = Field(default=16, ge=1)
    # Seconds given to open streams to finish after SIGTERM.
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    # Clients are asked to reconnect (GOAWAY) after this long, so they re-resolve and spread over new replicas;
    # streams open on the old connection get the grace to finish, then are cut (the gateway renews its long ASR
    # stream between utterances well before that).
    max_connection_age_s: float = Field(default=300.0, gt=0)
    max_connection_age_grace_s: float = Field(default=600.0, ge=0)
    # How far below the default CPU priority the stage runs (0-19, services/common/cpu_priority.py): speech
    # synthesis, the text engine and the recogniser yield to the frames where they share cores with animation.
    nice: int = Field(default=0, ge=0, le=19)

    def log_non_defaults(self) -> None:
        """Log every setting that differs from its default, so a deployment's choices are visible (a secret's value
        never: `SecretStr` settings show as stars)."""
        changed = {
            name: value
            for name, value in self.model_dump().items()
            if name in self.model_fields_set
        }
        log.info("%s settings: %s", type(self).__name__, changed or "all defaults")
