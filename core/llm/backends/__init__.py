"""Text-engine backends, one file per engine family, behind `LlmBackend`."""
