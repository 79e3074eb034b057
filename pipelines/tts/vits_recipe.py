"""The VITS training configuration: the paper's size for real voices, a tiny one for CPU smoke runs and tests."""

from pathlib import Path

from TTS.config.shared_configs import BaseAudioConfig
from TTS.tts.configs.shared_configs import BaseDatasetConfig
from TTS.tts.configs.vits_config import VitsArgs, VitsConfig

from pipelines.tts.ljspeech import SAMPLE_RATE

# Overrides of VitsArgs per size; "base" is Coqui's (and the paper's) default, 83M parameters.
SIZES: dict[str, dict] = {
    "base": {},
    "tiny": {
        "hidden_channels": 48,
        "hidden_channels_ffn_text_encoder": 96,
        "num_layers_text_encoder": 2,
        "num_layers_posterior_encoder": 4,
        "num_layers_flow": 2,
        "upsample_initial_channel_decoder": 64,
        "resblock_type_decoder": "2",
        "resblock_kernel_sizes_decoder": [3],
        "resblock_dilation_sizes_decoder": [[1, 3]],
        "periods_multi_period_discriminator": [2, 3],
        "use_sdp": False,
    },
}


def vits_config(data: Path, out: Path, size: str, batch_size: int, epochs: int, eval_size: int) -> VitsConfig:
    if size not in SIZES:
        raise ValueError(f"unknown VITS size {size!r}; choose from {', '.join(SIZES)}")
    dataset = BaseDatasetConfig(formatter="ljspeech", meta_file_train="metadata.csv", path=str(data), language="en-us")
    audio = BaseAudioConfig(
        sample_rate=SAMPLE_RATE, win_length=1024, hop_length=256, num_mels=80, mel_fmin=0, mel_fmax=None
    )
    return VitsConfig(
        model_args=VitsArgs(**SIZES[size]),
        audio=audio,
        run_name="vits",
        output_path=str(out),
        datasets=[dataset],
        batch_size=batch_size,
        eval_batch_size=max(1, min(batch_size, eval_size)),
        eval_split_size=eval_size,
        batch_group_size=0,
        num_loader_workers=0,
        num_eval_loader_workers=0,
        epochs=epochs,
        run_eval=eval_size > 0,
        test_delay_epochs=-1,
        text_cleaner="english_cleaners",
        use_phonemes=True,
        phonemizer="espeak",
        phoneme_language="en-us",
        phoneme_cache_path=str(out / "phoneme_cache"),
        compute_input_seq_cache=False,
        mixed_precision=False,
        print_step=10,
        print_eval=False,
        save_step=1000,
        save_n_checkpoints=1,
        save_best_after=0,
        dashboard_logger="tensorboard",
        test_sentences=[],
    )
