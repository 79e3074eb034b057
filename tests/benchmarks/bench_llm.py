"""Text engine: time to first token and tokens/s through the service and in the library."""

import time

import grpc
from avatar.llm.v1 import llm_pb2, llm_pb2_grpc

from core.llm.backends.base_backend import Completion, Sampling
from core.llm.backends.llama_cpp_backend import LlamaCppBackend, packaged_model
from core.llm.persona import Persona
from tests.benchmarks.report import Section, ms, p50, p95

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


def run(stack) -> Section:
    section = Section("Text engine (SmolLM2-135M-Instruct Q4_1, llama.cpp, 2 threads)")
    backend = LlamaCppBackend()
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
    section.add("time to first token, service", f"{ms(p50(service_ttft))} P50, {ms(p95(service_ttft))} P95", "≤ 100 ms")
    section.add("time to first token, library", f"{ms(p50(direct_ttft))} P50")
    section.add("tokens/s after the first, service", f"{p50(service_rate):.0f} P50", "≥ 40")
    section.add("tokens/s after the first, library", f"{p50(direct_rate):.0f} P50")
    section.add("service ÷ library, time to first token", f"{p50(service_ttft) / p50(direct_ttft):.2f}")
    load, ttft, rate = _transformers_gguf(PROMPTS)
    section.add("the same GGUF through transformers (fp32): load, TTFT, tokens/s",
                f"{load:.1f} s, {ms(ttft)}, {rate:.0f} tokens/s")
    section.notes.append("The service's first token includes embedding the question for custom-text retrieval.")
    section.notes.append("llama.cpp is the default: it keeps the Q4_1 weights, loads in under a second and runs several "
                         "times faster than transformers, which de-quantizes the GGUF to fp32.")
    return section
