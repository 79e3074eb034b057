"""Speech recognition backends, one file per model family, behind `AsrBackend`."""
