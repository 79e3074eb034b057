"""Writes a PEFT LoRA adapter of a llama-architecture model as a GGUF adapter file that llama.cpp applies to the
original (quantized) GGUF model: `Llama(model_path=..., lora_path=...)`, i.e. LLM_LORA_PATH.

Only projections whose GGUF weights keep Hugging Face's row order are adapted (value, output and MLP); the query
and key projections are stored permuted for rotary embeddings in GGUF, so `TARGET_MODULES` leaves them out.
"""

import re
from pathlib import Path

import numpy as np

from core.atomic import atomic_path

TARGET_MODULES = ["v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_GGUF_NAMES = {
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_PEFT_KEY = re.compile(r".*layers\.(\d+)\.(self_attn\.\w+|mlp\.\w+)\.lora_([AB])(?:\.\w+)?\.weight$")


def gguf_tensors(state_dict: dict) -> dict[str, np.ndarray]:
    """PEFT adapter weights → {"blk.N.attn_v.weight.lora_a": (r, in), "...lora_b": (out, r)} as float32."""
    tensors = {}
    for key, value in state_dict.items():
        match = _PEFT_KEY.match(key)
        if match is None:
            continue
        layer, module, which = match.groups()
        if module not in _GGUF_NAMES:
            raise ValueError(f"{module} cannot be exported (its GGUF weight is permuted or unknown)")
        name = f"blk.{layer}.{_GGUF_NAMES[module]}.weight.lora_{which.lower()}"
        tensors[name] = value.detach().float().cpu().numpy()
    if not tensors:
        raise ValueError("the adapter holds no LoRA weights")
    return tensors


def write_adapter(path: Path, state_dict: dict, alpha: float, architecture: str = "llama") -> Path:
    import gguf

    with atomic_path(path) as partial:
        writer = gguf.GGUFWriter(str(partial), architecture)
        writer.add_string("general.type", "adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(alpha))
        for name, array in sorted(gguf_tensors(state_dict).items()):
            writer.add_tensor(name, np.ascontiguousarray(array))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path
