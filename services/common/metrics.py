"""Prometheus metrics every service exports, named once here."""

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)

RPC_TOTAL = Counter("avatar_rpc_total", "RPCs finished, by method and gRPC status code", ["method", "code"])
RPC_DURATION = Histogram("avatar_rpc_duration_seconds", "Wall time of an RPC", ["method"], buckets=LATENCY_BUCKETS)
FIRST_RESULT = Histogram(
    "avatar_time_to_first_result_seconds",
    "Time from the start of an RPC to its first response",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
STREAMS_IN_FLIGHT = Gauge("avatar_streams_in_flight", "RPCs being served now (the queue depth)")
MODEL_READY = Gauge("avatar_model_ready", "1 once the model is loaded and warmed up")
REAL_TIME_FACTOR = Histogram(
    "avatar_real_time_factor",
    "Compute seconds per second of media processed",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0),
)
PROMPT_TOKENS = Counter(
    "avatar_llm_prompt_tokens_total",
    "Prompt tokens of finished generations: evaluated, or reused from a cached prefix",
    ["kind"],
)
LLM_QUEUE_WAIT = Histogram(
    "avatar_llm_queue_wait_seconds",
    "Time a generation waited for a slot and its first turn on the engine, before its prompt was evaluated",
    buckets=LATENCY_BUCKETS,
)
END_OF_TURN = Counter("avatar_asr_end_of_turn_total", "Turns ended, by the rule that ended them", ["reason"])
FINALS = Counter(
    "avatar_asr_finals_total",
    "Final transcripts, by the decode whose words they are: the final's own (beam search over the whole turn), or "
    "the pause's where the final's came too late or reads no more",
    ["decode"],
)
END_OF_TURN_JUDGEMENT = Histogram(
    "avatar_asr_end_of_turn_judgement_seconds",
    "Time the end-of-turn model took to read a turn's words",
    buckets=LATENCY_BUCKETS,
)
