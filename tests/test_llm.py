"""The text-engine contract with the real packaged SmolLM2 model on llama.cpp."""

import contextlib
import json
import subprocess
import threading
import sys
import time

import grpc
import pytest
from avatar.common.v1 import common_pb2
from avatar.llm.v1 import llm_pb2, llm_pb2_grpc

from core.llm.packaged_model import packaged_model
from services.llm.prompt import echoes
from services.runner.health import status
from services.runner.redis_server import free_port
from services.runner.topology import ServiceSpec

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module", params=["llama_cpp", "openai"])
def llm(request, stack):
    """The same conformance suite against each backend: llama.cpp in-process, and an OpenAI-compatible server
    (llama.cpp's own server, a real HTTP server) behind a second LLM service process."""
    if request.param == "llama_cpp":
        assert stack.wait("llm") == "SERVING"
        address = stack.address("llm")
        with grpc.insecure_channel(address) as channel:
            yield llm_pb2_grpc.LlmServiceStub(channel)
        return
    with openai_compatible_service(stack) as address, grpc.insecure_channel(address) as channel:
        yield llm_pb2_grpc.LlmServiceStub(channel)


@contextlib.contextmanager
def openai_compatible_service(stack):
    server_port, service_port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_model()), "--port", str(server_port),
         "--host", "127.0.0.1", "--n_ctx", "2048", "--n_threads", "2", "--model_alias", "smollm2-server"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    env = dict(stack.env(), LLM_BACKEND="openai", LLM_OPENAI_BASE_URL=f"http://127.0.0.1:{server_port}/v1",
               LLM_PORT=str(service_port), LLM_METRICS_PORT="0")
    service = subprocess.Popen([sys.executable, "-m", "services.llm"], env=env, cwd=stack.logs.parents[1],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spec = ServiceSpec("llm", service_port, 0, grpc=True)
    try:
        deadline = time.monotonic() + 120
        while status(spec) != "SERVING":
            assert time.monotonic() < deadline and service.poll() is None, "OpenAI-backed LLM service did not start"
            time.sleep(0.3)
        yield f"127.0.0.1:{service_port}"
    finally:
        for process in (service, server):
            process.terminate()
            process.wait(timeout=15)


def ask(text, **fields):
    params = fields.pop("params", llm_pb2.GenerationParams(temperature=0.0, max_tokens=60))
    return llm_pb2.GenerateRequest(user_text=text, params=params, **fields)


def test_a_reply_streams_in_deltas_and_ends_with_a_finish_reason(llm):
    responses = list(llm.Generate(ask("Tell me something nice about the sea."), timeout=60))
    deltas = [r.delta for r in responses if r.delta]
    assert len(deltas) >= 2
    assert len("".join(deltas).split()) >= 3
    assert responses[-1].finish_reason in (llm_pb2.STOP, llm_pb2.LENGTH)
    assert not any(ch in "".join(deltas) for ch in "*#`")  # speakable: no markdown


def test_max_tokens_ends_with_length(llm):
    params = llm_pb2.GenerationParams(temperature=0.0, max_tokens=5)
    responses = list(llm.Generate(ask("Describe a long walk through a big city.", params=params), timeout=60))
    assert responses[-1].finish_reason == llm_pb2.LENGTH
    assert responses[-1].usage.completion_tokens <= 5


def test_persona_name_is_honoured(llm):
    for name in ("Zorbo", "Matilda"):
        request = ask("What is your name?", persona=llm_pb2.Persona(name=name))
        reply = "".join(r.delta for r in llm.Generate(request, timeout=60))
        assert name.lower() in reply.lower(), reply


def test_history_is_used(llm):
    history = [
        llm_pb2.ChatMessage(role=llm_pb2.ROLE_USER, content="My dog is called Biscuit."),
        llm_pb2.ChatMessage(role=llm_pb2.ROLE_ASSISTANT, content="Biscuit is a lovely name for a dog."),
    ]
    reply = "".join(r.delta for r in llm.Generate(ask("What is my dog called?", history=history), timeout=60))
    assert "biscuit" in reply.lower(), reply


def test_cancel_stops_generation(llm):
    """After a cancel the engine is free again at once: the next request's first token is not held up."""
    params = llm_pb2.GenerationParams(temperature=0.8, max_tokens=400)
    call = llm.Generate(ask("Write a very long story about a dragon and a knight.", params=params), timeout=60)
    received = 0
    for response in call:
        received += 1
        if received == 3:
            break
    cancelled_at = time.perf_counter()
    call.cancel()
    first = None
    for response in llm.Generate(ask("Say hello."), timeout=60):
        first = time.perf_counter() - cancelled_at
        break
    unloaded = []
    for _ in range(3):
        start = time.perf_counter()
        next(iter(llm.Generate(ask("Say hello."), timeout=60)))
        unloaded.append(time.perf_counter() - start)
    # The cancelled generation would have held the engine for seconds more (400 tokens at ~80 tokens/s).
    assert first is not None and first < 0.2 + max(unloaded), (first, unloaded)


def test_after_a_greeting_the_questions_are_answered_not_given_back(llm):
    """A conversation that opens with a greeting: no later reply is the user's question given back (a small
    model's habit once one echo is in its history)."""
    history = []
    for turn, text in enumerate(["Hello! How are you today?", "What is your name?", "Can you recommend a good book?",
                                 "What should I cook for dinner?", "Why do leaves change color in autumn?"]):
        reply = "".join(r.delta for r in llm.Generate(ask(text, history=history), timeout=60)).strip()
        assert not (turn and echoes(text, reply)), (text, reply)
        history += [llm_pb2.ChatMessage(role=llm_pb2.ROLE_USER, content=text),
                    llm_pb2.ChatMessage(role=llm_pb2.ROLE_ASSISTANT, content=reply)]


def test_bad_requests_are_refused(llm):
    cases = [
        (ask("   "), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        (ask("hi", avatar_id="nobody-here"), grpc.StatusCode.NOT_FOUND, "unknown avatar"),
        (ask("hi", model="gpt-99"), grpc.StatusCode.NOT_FOUND, "available"),
        (ask("hi", history=[llm_pb2.ChatMessage(role=llm_pb2.ROLE_USER, content="x")] * 500),
         grpc.StatusCode.INVALID_ARGUMENT, "history"),
        (ask("word " * 3000), grpc.StatusCode.INVALID_ARGUMENT, "characters"),
    ]
    for request, code, fragment in cases:
        with pytest.raises(grpc.RpcError) as err:
            list(llm.Generate(request, timeout=30))
        assert err.value.code() == code and fragment in err.value.details(), err.value.details()


def test_long_history_is_trimmed_to_the_context(llm):
    history = [llm_pb2.ChatMessage(role=llm_pb2.ROLE_USER, content="blah " * 150)] * 40  # ~6,000 tokens
    responses = list(llm.Generate(ask("Say hi.", history=history), timeout=60))
    assert responses[-1].finish_reason in (llm_pb2.STOP, llm_pb2.LENGTH)


def test_list_models(llm):
    reply = llm.ListModels(llm_pb2.ListModelsRequest(), timeout=5)
    assert reply.default_model in ("SmolLM2-135M-Instruct.Q4_1", "smollm2-server")
    assert reply.models[0].context_tokens >= 2048


def test_custom_text_is_retrieved_into_the_answer(llm, stack):
    folder = stack.avatars_dir / "lighthouse"
    (folder / "knowledge").mkdir(parents=True, exist_ok=True)
    (folder / "persona.json").write_text(json.dumps({"name": "Morwenna", "style": "cheerful"}))
    (folder / "knowledge" / "notes.txt").write_text(
        "Our bakery opens at seven in the morning and closes at six in the evening.\n\n"
        "The lighthouse on Gull Rock was built long ago. The lighthouse keeper's cat is named Pumpernickel "
        "and it likes sardines.\n\nThe harbour festival takes place every August with boat races."
    )
    request = ask("What is the name of the lighthouse keeper's cat?", avatar_id="lighthouse")
    reply = "".join(r.delta for r in llm.Generate(request, timeout=60))
    assert "pumpernickel" in reply.lower(), reply


def test_each_sessions_next_turn_reuses_its_evaluated_prefix_while_sessions_interleave(stack):
    """Two sessions take turns on one llama.cpp instance: each turn's usage says most of its prompt (its own
    earlier turns, kept under its session id) was not evaluated again."""
    questions = {"a": ["Hello, who are you?", "What do you like to eat?", "Tell me about the sea."],
                 "b": ["Good morning! How are you?", "What is your favourite colour?", "Can you tell me a joke?"]}
    history = {"a": [], "b": []}
    with grpc.insecure_channel(stack.address("llm")) as channel:
        llm = llm_pb2_grpc.LlmServiceStub(channel)
        for turn in range(3):
            for session in ("a", "b"):
                request = ask(questions[session][turn], history=history[session],
                              meta=common_pb2.RequestMeta(session_id=session))
                responses = list(llm.Generate(request, timeout=60))
                usage = responses[-1].usage
                reply = "".join(r.delta for r in responses)
                if turn:
                    assert usage.cached_prompt_tokens >= 0.7 * usage.prompt_tokens, (session, turn, usage)
                history[session] += [llm_pb2.ChatMessage(role=llm_pb2.ROLE_USER, content=questions[session][turn]),
                                     llm_pb2.ChatMessage(role=llm_pb2.ROLE_ASSISTANT, content=reply)]


def test_each_turn_evaluates_only_its_new_question_however_the_last_reply_tokenizes(stack):
    """The history gives each reply back as text, which tokenized anew now and then splits a word otherwise than
    the model wrote it (2 of 8 turns of one conversation): the next prompt's reused prefix would stop there, and
    the rest of the reply be evaluated again before the first token. The engine evaluates the next turn's
    beginning as the history will hold it while the user listens, so a turn evaluates no more than its question."""
    questions = ["Can you recommend a good book?", "Tell me a story about a brave little boat on the sea.",
                 "What should I cook for dinner?", "Tell me something about the ocean.",
                 "Why do leaves change color in autumn?", "What is your favorite season?"]
    history, evaluated = [], []
    with grpc.insecure_channel(stack.address("llm")) as channel:
        llm = llm_pb2_grpc.LlmServiceStub(channel)
        for question in questions:
            request = ask(question, history=history, meta=common_pb2.RequestMeta(session_id="retokenized"),
                          # seed 2: a reply the history gives back in other tokens
                          params=llm_pb2.GenerationParams(temperature=0.3, max_tokens=120, seed=2))
            responses = list(llm.Generate(request, timeout=60))
            usage = responses[-1].usage
            evaluated.append(usage.prompt_tokens - usage.cached_prompt_tokens)
            history += [llm_pb2.ChatMessage(role=llm_pb2.ROLE_USER, content=question),
                        llm_pb2.ChatMessage(role=llm_pb2.ROLE_ASSISTANT, content="".join(r.delta for r in responses))]
    # a question of up to 12 words is under 20 tokens, and the chat template adds 9 around it
    assert max(evaluated[1:]) <= 30, f"tokens evaluated per turn: {evaluated}"


def test_a_conversation_past_its_history_budget_keeps_reusing_what_it_kept(stack):
    """A conversation grows until the text engine drops its oldest messages: the turn that drops them still
    reuses most of its prompt (the dropped span is cut out of the evaluated context rather than the whole
    history evaluated again), and what the kept history says is still understood after the cut."""
    def user(i):
        fact = " By the way, my dog is called Biscuit." if i == 6 else ""  # kept: past the first dropped block
        return f"Note {i}: on day {i} of my trip I walked along the river past {i * 3} old boats and a mill.{fact}"

    def said(i):
        return f"That sounds lovely. Day {i} with {i * 3} boats by the mill must have been a calm walk."

    history, usages = [], []

    def turn(llm, text, max_tokens):
        request = ask(text, history=history, params=llm_pb2.GenerationParams(temperature=0.0, max_tokens=max_tokens),
                      meta=common_pb2.RequestMeta(session_id="long"))
        responses = list(llm.Generate(request, timeout=60))
        usages.append(responses[-1].usage)
        return "".join(r.delta for r in responses)

    with grpc.insecure_channel(stack.address("llm")) as channel:
        llm = llm_pb2_grpc.LlmServiceStub(channel)
        for i in range(40):
            turn(llm, user(i), 4)
            history += [llm_pb2.ChatMessage(role=llm_pb2.ROLE_USER, content=user(i)),
                        llm_pb2.ChatMessage(role=llm_pb2.ROLE_ASSISTANT, content=said(i))]
            if len(usages) > 1 and usages[-1].prompt_tokens < usages[-2].prompt_tokens:
                break
        else:
            pytest.fail(f"the history was never dropped: {[u.prompt_tokens for u in usages]}")
        dropping = usages[-1]
        reply = turn(llm, "What is the name of my dog?", 16)
    assert dropping.cached_prompt_tokens >= 0.7 * dropping.prompt_tokens, f"history evaluated again: {dropping}"
    assert usages[-1].cached_prompt_tokens >= 0.7 * usages[-1].prompt_tokens, usages[-1]
    assert "biscuit" in reply.lower(), reply


def test_a_new_turn_is_answered_while_another_sessions_long_reply_is_still_being_written(stack):
    """Two sessions on one engine: a short question asked while a long story streams gets its first words
    before the story ends (the story's tail gives way), and the story then goes on to its end."""
    story_times, short_times, short = [], [], ""
    with grpc.insecure_channel(stack.address("llm")) as channel:
        llm = llm_pb2_grpc.LlmServiceStub(channel)
        story_started = threading.Event()

        def tell_story():
            request = ask("Tell me a long story about a brave little boat on the sea.",
                          params=llm_pb2.GenerationParams(temperature=0.0, max_tokens=160),
                          meta=common_pb2.RequestMeta(session_id="story"))
            for response in llm.Generate(request, timeout=120):
                if response.delta:
                    story_times.append(time.monotonic())
                    if len(story_times) == 10:
                        story_started.set()

        story = threading.Thread(target=tell_story)
        story.start()
        assert story_started.wait(60), "the story did not start"
        request = ask("What is your name?", meta=common_pb2.RequestMeta(session_id="short"))
        for response in llm.Generate(request, timeout=60):
            if response.delta:
                short_times.append(time.monotonic())
                short += response.delta
        story.join(120)
    assert len(story_times) > 40, "the story was not long enough to tell"
    assert short.strip() and short_times[0] < story_times[-1], "the short answer waited for the whole story"
    assert sum(t > short_times[0] for t in story_times) >= 10, "the story did not go on after the new turn"
