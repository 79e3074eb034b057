"""Pipelines that make an avatar: datasets, fine-tuning, and the SDA model's training."""
