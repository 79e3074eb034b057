"""A NeMo character-CTC model configuration (separable-convolution encoder, QuartzNet-style), for ASR trained
from scratch where no `.nemo` model is at hand to fine-tune."""

import re

from core.tts.text_normalizer import normalize

LABELS = list(" abcdefghijklmnopqrstuvwxyz'")

# (filters, blocks): "small" runs a few CPU steps in tests; "base" is a real (if modest) model.
SIZES = {"small": (64, 2), "base": (256, 5)}


def ctc_text(text: str) -> str:
    """Transcript text in the model's alphabet: numbers spelled out, lower case, letters, apostrophes, spaces."""
    spoken = normalize(text).lower().replace("-", " ")
    return " ".join(re.sub(r"[^a-z' ]+", " ", spoken).split())


def ctc_config(manifest: str, size: str = "base", batch_size: int = 8) -> dict:
    filters, blocks = SIZES[size]

    def block(kernel: int, stride: int, residual: bool) -> dict:
        return {"filters": filters, "repeat": 1, "kernel": [kernel], "dilation": [1], "dropout": 0.0,
                "separable": True, "stride": [stride], "residual": residual}

    encoder = [block(11, 2, False)] + [block(11 + 2 * i, 1, True) for i in range(blocks - 1)]
    return {
        "sample_rate": 16000,
        "labels": LABELS,
        "train_ds": {"manifest_filepath": manifest, "sample_rate": 16000, "labels": LABELS,
                     "batch_size": batch_size, "shuffle": True, "num_workers": 0},
        "preprocessor": {"_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                         "sample_rate": 16000, "normalize": "per_feature", "window_size": 0.025,
                         "window_stride": 0.01, "features": 64, "n_fft": 512, "dither": 0.0},
        "encoder": {"_target_": "nemo.collections.asr.modules.ConvASREncoder", "feat_in": 64, "activation": "relu",
                    "conv_mask": True, "jasper": encoder},
        "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoder", "feat_in": filters,
                    "num_classes": len(LABELS), "vocabulary": LABELS},
        "optim": {"name": "adam", "lr": 0.005},
    }
