"""Speech synthesis backends, one file per engine family, behind `TtsBackend`."""
