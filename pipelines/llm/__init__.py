"""The text engine's fine-tuning: a LoRA adapter turned into the GGUF file llama.cpp loads."""
