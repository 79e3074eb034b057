"""Coqui VITS voices: LJSpeech-layout datasets, the training recipe, and the voice folder the TTS service loads."""
