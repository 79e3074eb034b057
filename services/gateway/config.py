"""Gateway process settings (env prefix GATEWAY_; REDIS_URL is read as is)."""

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, TypeAdapter, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.avatar_bundle import AvatarsDir
from core.provenance.watermark import WatermarkDir
from services.gateway.protocol import AudioCodec, VideoCodec


class IceServer(BaseModel):
    urls: list[str] = Field(min_length=1)
    username: str = ""
    credential: str = ""


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    # 127.0.0.1: this machine only (`make run`); GATEWAY_HOST=0.0.0.0 to serve other machines (the image does).
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # The operators' port: /metrics and /readyz's details (each stage's health, Redis, sessions). Not the public
    # one: compose and the Ingress publish only `port`. 0: no metrics at all.
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    log_level: str = "INFO"
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL", "GATEWAY_REDIS_URL"))
    asr_address: str = "127.0.0.1:50051"
    llm_address: str = "127.0.0.1:50052"
    tts_address: str = "127.0.0.1:50053"
    sda_address: str = "127.0.0.1:50054"
    # Who may talk and call (services/gateway/access.py): `auto` is jwt where a key is set, else token where one is,
    # else none, which only a gateway on a loopback address may run with (the `make run` default).
    auth: Literal["auto", "none", "token", "jwt"] = "auto"
    # One shared secret for everything (the hello's `token`, REST's `Authorization: Bearer`).
    auth_token: SecretStr = SecretStr("")
    # Per-user signed tokens: the gateway's own HS256 key, or an identity provider's RS256 public key (PEM) or JWKS
    # address; `aud`/`iss` are checked where set.
    jwt_secret: SecretStr = SecretStr("")
    jwt_public_key: str = ""
    jwt_jwks_url: str = ""
    jwt_audience: str = ""
    jwt_issuer: str = ""
    # A socket that has sent no valid hello this long after it opened is closed; sockets at once from one client
    # address, and in all, are capped; a client that reads so slowly that this many bytes wait for it is dropped.
    hello_timeout_s: float = Field(default=10.0, gt=0)
    max_sockets_per_address: int = Field(default=16, ge=1)
    max_sockets: int = Field(default=1000, ge=1)
    max_queued_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    # Messages refused (junk, audio before the hello, oversized frames): a burst of this many, then one a second;
    # past that the client is dropped at once (what it sends is no longer read, and nothing more is queued for it).
    max_refused_burst: int = Field(default=50, ge=1)
    # Browser pages allowed to open the WebSocket (their Origin header): the gateway's own page always; "*" any.
    # A client that sends no Origin (not a browser) is not affected.
    allowed_origins: list[str] = []
    session_ttl_s: int = Field(default=24 * 3600, ge=60)
    # Conversations admitted at once; past it a hello gets `busy` (0: no limit). The default is what the
    # concurrency bench measured a 2-core box to hold without slowing every session down.
    max_sessions: int = Field(default=3, ge=0)
    # Below that ceiling, what this machine is seen to hold (admission.py): a reply whose media runs out for more
    # than `late_media_s` while its listener's player plays it lowers the ceiling to one below the conversations
    # open then, one whose media comes with less than `thin_media_s` left to play to the conversations open; it
    # rises by one for every `capacity_relax_s` without either.
    learn_capacity: bool = True
    late_media_s: float = Field(default=0.0, ge=0)
    thin_media_s: float = Field(default=0.04, ge=0)
    capacity_relax_s: float = Field(default=600.0, gt=0)
    # And what the machine's measured load says it carries (machine_load.py): conversations that could all talk at
    # once within `cpu_margin` of its cores, a second of reply costing `reply_cpu_s` core-seconds until measured.
    predict_capacity: bool = True
    reply_cpu_s: float = Field(default=0.8, gt=0)
    cpu_margin: float = Field(default=0.85, gt=0, le=1)
    # Start the LLM on the transcript decoded when the user pauses, before the end of turn (kept if the final
    # transcript is the same).
    speculation: bool = True
    # Speech that begins over a reply pauses it at the client at once; the reply resumes where it paused when the
    # speech stops and turns out to be no words (a cough, a "mm-hmm", the reply's own echo), at the latest after
    # `pause_resume_s`, and is interrupted when it holds words. The reply's echo through the user's speakers is
    # looked for up to `echo_max_delay_s` behind what the user is hearing.
    pause_resume_s: float = Field(default=2.5, gt=0)
    # Words the recogniser gave less than this probability interrupt nothing (Whisper reads a cough or a fan as
    # "you" at 0.02-0.04; a word said over the reply, even cut short, measured 0.07-0.9).
    barge_in_min_probability: float = Field(default=0.05, ge=0, le=1)
    echo_max_delay_s: float = Field(default=1.0, ge=0, le=3.0)
    # History: what goes to the text engine with a turn (an estimate of tokens, and messages: the text engine
    # refuses more than LLM_MAX_HISTORY_MESSAGES), and how much of it a session keeps in Redis.
    history_tokens: int = Field(default=3000, ge=0)
    history_messages: int = Field(default=128, ge=0, le=200)
    history_stored: int = Field(default=400, ge=32)
    # The speech recognition stream is renewed between utterances once it is this old (the stages' connections
    # age out: ASR_MAX_CONNECTION_AGE_S + its grace); a stream cut mid-utterance is re-opened and the utterance so
    # far sent again, up to `asr_reopen_attempts` times in a row.
    asr_stream_renew_s: float = Field(default=120.0, gt=0)
    asr_reopen_attempts: int = Field(default=3, ge=0)
    # On SIGTERM, open sessions get this long to finish the reply in flight before they are told to reconnect
    # (compose's stop_grace_period and the pod's terminationGracePeriodSeconds leave room for it).
    drain_grace_s: float = Field(default=20.0, ge=0)
    # Redis out for less than this does not make the gateway unready (every gateway shares it; conversations go on
    # from memory while it restarts); longer, and the load balancer is told.
    redis_outage_grace_s: float = Field(default=30.0, ge=0)
    # After a SIGTERM the gateway goes on answering for at least this long — /readyz 503, newcomers told to
    # reconnect — so a load balancer polling readiness has taken it out before it stops listening (a newcomer meets
    # a redirect, not a refused connection). Ctrl+C (SIGINT) does not wait for it.
    drain_notice_s: float = Field(default=5.0, ge=0)
    # Every stage call has explicit limits, so a stage that hangs (a lost connection, a stuck model) ends the turn
    # with stage_unavailable instead of leaving it open: a reply that makes no progress (no text, audio or frame)
    # for `reply_stall_s` ends; each call also has a deadline.
    reply_stall_s: float = Field(default=15.0, gt=0)
    # A reply is spoken at most this far ahead of what the user has heard, counting the text speech synthesis was
    # given and has not spoken yet (a long answer does not take the CPU from this or other sessions' next frames;
    # the first clauses go at once), and animated at most `animation_lead_s` ahead of it.
    reply_lead_s: float = Field(default=8.0, gt=0)
    animation_lead_s: float = Field(default=2.5, gt=0)
    # A stage found disconnected at the start of a call (restarting) is given this long to come back first.
    stage_reconnect_s: float = Field(default=3.0, ge=0)
    llm_timeout_s: float = Field(default=120.0, gt=0)
    tts_timeout_s: float = Field(default=180.0, gt=0)
    sda_timeout_s: float = Field(default=300.0, gt=0)
    max_audio_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    # The codecs offered to clients (each hello lists what it decodes; JPEG and PCM are every client's fallback).
    # Encoded video (H.264, VP8) is made by the animation stage, one encoder per reply stream; Opus here, one
    # encoder per reply, at `opus_kbps`.
    video_codecs: list[VideoCodec] = ["h264", "vp8", "jpeg"]
    audio_codecs: list[AudioCodec] = ["opus", "linear16"]
    opus_kbps: int = Field(default=24, ge=6, le=128)
    # WebRTC beside the WebSocket (services/gateway/webrtc.py): a client that offers it gets its media over RTP.
    # The ICE servers the gateway's peer connections use, as JSON: [{"urls": ["stun:..."]}, {"urls": ["turn:..."],
    # "username": "...", "credential": "..."}] (the credential from a Secret); none: host candidates only (a LAN,
    # or a gateway with a public address).
    webrtc: bool = True
    ice_servers: SecretStr = SecretStr("[]")
    # Published avatars (read: which have a voice, which exist); the worker writes them.
    avatars_dir: AvatarsDir
    # Exported videos carry a C2PA manifest signed with this certificate chain (PEM, the signer's first) and its
    # private key (PEM), e.g. from a Secret; without them a DEVELOPMENT key is made under <AVATARS_DIR>/.signing.
    c2pa_chain_file: str = ""
    c2pa_key_file: str = ""
    # The audio watermark's model (POST /v1/provenance reads it; the TTS stage writes it).
    watermark_dir: WatermarkDir
    max_photo_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # The consent statement (audio, video) or signed document sent with a photo avatar: only its hash is kept.
    max_consent_evidence_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    # REST uploads: a request body over `max_body_bytes` is refused before it is parsed; an audio file is refused
    # by the length it decodes to (a small compressed file can hold hours), before it is decoded.
    max_body_bytes: int = Field(default=60 * 1024 * 1024, ge=1024 * 1024)
    max_upload_audio_s: float = Field(default=600.0, gt=0)
    # Costly REST calls (transcription, chat, speech, video, a new avatar) per client (a token's user, else an
    # address): this many a minute on average, bursts of `rest_burst`; past it 429 with Retry-After.
    rest_rate_per_min: float = Field(default=60.0, gt=0)
    rest_burst: int = Field(default=30, ge=1)

    def ice_server_list(self) -> list[IceServer]:
        return TypeAdapter(list[IceServer]).validate_json(self.ice_servers.get_secret_value())

    @model_validator(mode="after")
    def _ice_servers_valid(self):
        self.ice_server_list()  # refused at start, not at the first offer
        return self

    @model_validator(mode="after")
    def _signing_key_whole(self):
        if bool(self.c2pa_chain_file) != bool(self.c2pa_key_file):
            raise ValueError("GATEWAY_C2PA_CHAIN_FILE and GATEWAY_C2PA_KEY_FILE go together: set both or neither")
        return self
