"""Text engine: time to first token and tokens/s through the service and in the library."""

import time

import grpc
from avatar.llm.v1 import llm_pb2, llm_pb2_grpc

from core.llm.backends.base_backend import Completion, Sampling
from core.llm.backends.llama_cpp_backend import LlamaCppBackend
from core.llm.packaged_model import packaged_model
from core.llm.persona import Persona
from services.gateway import history
from services.llm.config import LlmSettings
from services.llm.prompt import build_messages
from tests.benchmarks.bench_e2e import QUESTIONS
from tests.benchmarks.report import Section, met, met_at_least, ms, p50, p95

PROMPTS = [
    "Hi! How are you today?",
    "What should I cook for dinner tonight?",
    "Tell me a fun fact about the ocean.",
    "Can you recommend a good book?",
    "What is the best way to learn to swim?",
]
MAX_TOKENS = 64


def _transformers_gguf(prompts: list[str]) -> tuple[float, float, float]:
    """The other way to run the same GGUF: transformers de-quantizes it to fp32. (load s, TTFT s, tokens/s)"""
    import threading

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    path = packaged_model()
    torch.set_num_threads(2)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    load = time.perf_counter() - start
    ttft, rate = [], []
    for prompt in prompts:
        messages = [{"role": "system", "content": Persona().system_message()}, {"role": "user", "content": prompt}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
        result = {}
        kwargs = dict(input_ids=ids, max_new_tokens=MAX_TOKENS, do_sample=False, repetition_penalty=1.15,
                      streamer=streamer)
        worker = threading.Thread(target=lambda: result.setdefault("out", model.generate(**kwargs)))
        start = time.perf_counter()
        worker.start()
        first = next((time.perf_counter() for piece in streamer if piece), None)
        for _ in streamer:
            pass
        worker.join()
        end = time.perf_counter()
        ttft.append(first - start)
        rate.append((result["out"].shape[1] - ids.shape[1]) / (end - first))
    return load, p50(ttft), p50(rate)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _long_conversation(backend: LlamaCppBackend, turns: int = 90) -> dict:
    """One session far past its history budget, as the gateway sends it (every fourth reply cut short by a
    barge-in): first token per turn, the share of each prompt not evaluated again, and memory."""
    settings, persona, said = LlmSettings(), Persona(), []
    sampling = Sampling(settings.max_tokens, settings.temperature, settings.top_p, settings.repetition_penalty)
    roles = {"user": llm_pb2.ROLE_USER, "assistant": llm_pb2.ROLE_ASSISTANT}
    firsts, reused, rss = [], [], []
    for turn in range(turns):
        question = QUESTIONS[turn % len(QUESTIONS)]
        sent = [llm_pb2.ChatMessage(role=roles[m["role"]], content=m["content"])
                for m in history.for_reply(said, 3000, 128)]
        messages = build_messages(persona, sent, question, backend.count_tokens,
                                  backend.context_tokens - sampling.max_tokens, [], settings.history_tokens)
        completion, start, first, reply = Completion(), time.perf_counter(), None, ""
        for delta in backend.stream(messages, sampling, completion, session="long"):
            first = first or time.perf_counter()
            reply += delta
        firsts.append((first or time.perf_counter()) - start)
        reused.append(completion.cached_prompt_tokens / completion.prompt_tokens)
        rss.append(_rss_mb())
        barged = turn % 4 == 3
        said += [history.entry("user", question),
                 history.entry("assistant", reply[: len(reply) * 2 // 5] if barged else reply, barged)]
    return {"firsts": firsts, "reused": reused, "rss": rss}


def run(stack) -> Section:
    threads = LlmSettings().threads  # the service's, as the stack runs it
    section = Section(f"Text engine (SmolLM2-135M-Instruct Q4_1, llama.cpp, {threads} thread{'s' * (threads > 1)})")
    backend = LlamaCppBackend(threads=threads)
    backend.load()
    sampling = Sampling(MAX_TOKENS, 0.0, 1.0, 1.15)
    direct_ttft, direct_rate, service_ttft, service_rate = [], [], [], []
    with grpc.insecure_channel(stack.address("llm")) as channel:
        stub = llm_pb2_grpc.LlmServiceStub(channel)
        for prompt in PROMPTS:
            messages = [{"role": "system", "content": Persona().system_message()}, {"role": "user", "content": prompt}]
            completion = Completion()
            start = time.perf_counter()
            first = None
            for _ in backend.stream(messages, sampling, completion):
                first = first or time.perf_counter()
            end = time.perf_counter()
            direct_ttft.append(first - start)
            direct_rate.append(completion.completion_tokens / (end - first) if end > first else 0)

            request = llm_pb2.GenerateRequest(
                user_text=prompt, params=llm_pb2.GenerationParams(temperature=0.0, max_tokens=MAX_TOKENS))
            start = time.perf_counter()
            first = None
            tokens = 0
            for response in stub.Generate(request, timeout=60):
                if response.delta:
                    first = first or time.perf_counter()
                tokens = response.usage.completion_tokens or tokens
            end = time.perf_counter()
            service_ttft.append(first - start)
            service_rate.append(tokens / (end - first) if end > first else 0)
    section.add("time to first token, service",
                f"{ms(p50(service_ttft))} P50, {ms(p95(service_ttft))} P95 ({met(p50(service_ttft), 0.1)})", "≤ 100 ms")
    section.add("time to first token, library", f"{ms(p50(direct_ttft))} P50")
    section.add("tokens/s after the first, service",
                f"{p50(service_rate):.0f} P50 ({met_at_least(p50(service_rate), 40, lambda v: f'{v:.1f} tokens/s')})",
                "≥ 40")
    section.add("tokens/s after the first, library", f"{p50(direct_rate):.0f} P50")
    section.add("service ÷ library, time to first token", f"{p50(service_ttft) / p50(direct_ttft):.2f}")
    long = _long_conversation(backend)
    section.add(f"a {len(long['firsts'])}-turn conversation past its history budget: first token",
                f"{ms(p50(long['firsts']))} P50, {ms(max(long['firsts']))} worst",
                "no turn re-evaluates the history")
    section.add("… the lowest share of a prompt reused", f"{min(long['reused'][1:]):.0%}")
    third = len(long["rss"]) // 3
    section.add("… resident memory after a third of it → at the end",
                f"{long['rss'][third]:.0f} → {long['rss'][-1]:.0f} MB", "flat once the history is at its budget")
    load, ttft, rate = _transformers_gguf(PROMPTS)
    section.add("the same GGUF through transformers (fp32): load, TTFT, tokens/s",
                f"{load:.1f} s, {ms(ttft)}, {rate:.0f} tokens/s")
    section.notes.append("The service's first token includes embedding the question for custom-text retrieval.")
    section.notes.append("llama.cpp is the default: it keeps the Q4_1 weights, loads in under a second and runs several "
                         "times faster than transformers, which de-quantizes the GGUF to fp32.")
    return section
