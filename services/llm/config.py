"""Text-engine process settings (env prefix LLM_)."""

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from core.avatar_bundle import AvatarsDir
from services.common.settings import ServiceSettings


class LlmSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLM_", env_file=".env", extra="ignore")

    port: int = 50052
    metrics_port: int = 9102
    # llama_cpp: a local GGUF model; openai: any OpenAI-compatible server (vLLM, TGI, llama.cpp server) by URL.
    backend: Literal["llama_cpp", "openai"] = "llama_cpp"
    openai_base_url: str = "http://127.0.0.1:8080/v1"
    # Empty: the first model the server lists.
    openai_model: str = ""
    openai_api_key: SecretStr = SecretStr("")  # never logged
    # A GGUF model file; empty = the packaged SmolLM2-135M-Instruct.
    model_path: str = ""
    # A GGUF LoRA adapter applied on top (e.g. from the fine-tuning pipeline).
    lora_path: str = ""
    context_tokens: int = Field(default=2048, ge=256)
    # CPU threads of llama.cpp. One by default: its threads wait for each other spinning at every layer, so where
    # the voice, the face and a browser share the cores, a thread that loses its core stalls the others while they
    # burn theirs (two threads beside one busy process here: 10x the CPU, the reply's next clause seconds late and
    # the face's frames starved); one thread writes text several times faster than it is spoken. On a machine of
    # its own (a dedicated text-engine replica) raise it to its cores.
    threads: int = Field(default=1, ge=1)
    # Below the frames' CPU priority where it shares cores with animation (services/common/cpu_priority.py).
    nice: int = Field(default=10, ge=0, le=19)
    # Generations served at once (llama.cpp: one context each, taking turns token by token); more wait for a slot.
    slots: int = Field(default=4, ge=1)
    # The first tokens of a reply (about its first clause, what the voice needs to start) go ahead of the tails
    # of other sessions' longer replies.
    leading_tokens: int = Field(default=24, ge=1)
    # Evaluated prompt states kept across requests (llama.cpp), so each session's next turn reuses its prefix.
    prefix_cache_mb: int = Field(default=256, ge=0)
    # History tokens a prompt may carry (a latency bound: uncached history is evaluated before the first token).
    history_tokens: int = Field(default=1024, ge=0)
    max_tokens: int = Field(default=160, ge=1)
    temperature: float = Field(default=0.3, ge=0)
    top_p: float = Field(default=0.9, gt=0, le=1)
    repetition_penalty: float = Field(default=1.15, ge=1)
    max_user_chars: int = Field(default=4000, ge=1)
    max_history_messages: int = Field(default=200, ge=0)
    # Avatars: <avatars_dir>/<avatar_id>/ holds persona.json, knowledge/ (custom text) and llm-adapter.gguf (LoRA).
    avatars_dir: AvatarsDir
    persona_name: str = "Ava"
    persona_style: str = "friendly"
    # Custom text: passages retrieved per question from <avatars_dir>/<avatar_id>/knowledge/.
    knowledge_passages: int = Field(default=3, ge=0)
