"""Step 8, finetune_llm: a LoRA adapter (peft) that teaches the text engine how the target talks.

Conversation pairs come from the recording itself: what was said just before each of the target's clips (the
other speaker's words, transcribed here) is the user turn, the target's reviewed transcript the reply; with
nobody speaking before, the target's previous clip stands in. The base is the LLM service's own GGUF model,
loaded de-quantized by transformers; the loss counts the reply tokens only. TensorBoard logs go to
`runs/llm/`; the adapter is written as `models/llm-adapter.gguf` for llama.cpp (LLM_LORA_PATH) and in PEFT form
under `models/llm-adapter/`.
"""

import json

import numpy as np
import soundfile as sf
from tqdm import tqdm

from core.atomic import atomic_dir
from pipelines.llm.lora_gguf import TARGET_MODULES, write_adapter
from pipelines.options import Options
from pipelines.speech_regions import RATE
from pipelines.workspace import PipelineError, Workspace

NEEDS = ["create_dataset", "diarize", "clip", "review"]
ADAPTER = "models/llm-adapter.gguf"
RANK, ALPHA = 8, 16
BEFORE_S = 6.0  # how far back the user turn before a clip is looked for


def key(ws: Workspace, opts: Options) -> dict:
    return {"steps": opts.llm_steps, "rank": RANK, "persona": persona_name(ws, opts)}


def persona_name(ws: Workspace, opts: Options) -> str:
    return opts.persona_name or ws.name.replace("_", " ").replace("-", " ").title()


def conversation_pairs(ws: Workspace) -> list[tuple[str, str]]:
    from core.asr.backends.whisper_ct2 import WhisperCt2Backend

    final = json.loads((ws.root / "transcripts_final.json").read_text())
    diarization = {d["source"]: d["segments"] for d in json.loads((ws.root / "diarization.json").read_text())}
    sources = {s["id"]: s for s in ws.require("create_dataset")["sources"]}
    asr, audio_of, pairs, previous = None, {}, [], ""
    for clip in tqdm(ws.require("clip")["clips"], desc="pairing turns", unit="clip"):
        reply = final.get(clip["id"])
        if not reply:
            continue
        before = [s for s in diarization[clip["source"]]
                  if not s["target"] and clip["start_s"] - BEFORE_S <= s["end_s"] <= clip["start_s"] + 0.1]
        prompt = ""
        if before:
            if asr is None:
                asr = WhisperCt2Backend(final_beam_size=1)
                asr.load()
            if clip["source"] not in audio_of:
                audio_of[clip["source"]], _ = sf.read(ws.root / sources[clip["source"]]["audio"], dtype="float32")
            start = min(s["start_s"] for s in before)
            speech = audio_of[clip["source"]][int(start * RATE) : int(before[-1]["end_s"] * RATE)]
            prompt = " ".join(w.text.strip() for w in asr.transcribe(speech, "", "en")).strip()
        pairs.append((prompt or previous or "Tell me something about yourself.", reply))
        previous = reply
    return pairs


def _examples(tokenizer, pairs: list[tuple[str, str]], system: str) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per pair, under the system prompt the service will use; labels are -100 except on the
    reply."""
    out = []
    for prompt, reply in pairs:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(reply + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        out.append((head_ids + reply_ids, [-100] * len(head_ids) + reply_ids))
    return out


def run(ws: Workspace, opts: Options) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.tensorboard import SummaryWriter
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.llm.packaged_model import packaged_model
    from core.llm.persona import Persona

    pairs = conversation_pairs(ws)
    if not pairs:
        raise PipelineError("no clip has a transcript to teach the text engine with")
    torch.manual_seed(0)
    gguf = packaged_model()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.05,
                                             target_modules=TARGET_MODULES, task_type="CAUSAL_LM"))
    system = Persona(name=persona_name(ws, opts)).system_message()
    examples = _examples(tokenizer, pairs, system)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    writer = SummaryWriter(str(ws.root / "runs" / "llm"))
    rng = np.random.default_rng(0)
    model.train()
    losses = []
    for step in tqdm(range(opts.llm_steps), desc="LoRA fine-tuning", unit="step"):
        ids, labels = examples[int(rng.integers(len(examples)))]
        out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss))
        writer.add_scalar("loss/train", losses[-1], step)
    writer.close()
    with atomic_dir(ws.root / "models" / "llm-adapter") as folder:
        model.save_pretrained(str(folder))
    adapter = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    write_adapter(ws.root / ADAPTER, adapter, ALPHA)
    return {"adapter": ADAPTER, "pairs": len(pairs), "steps": opts.llm_steps,
            "first_loss": round(losses[0], 4), "last_loss": round(float(np.mean(losses[-5:])), 4)}
