"""Speech recognition training code: the NeMo CTC recipe for a model trained from scratch."""
