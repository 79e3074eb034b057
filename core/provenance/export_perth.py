"""Build step: the audio watermark's networks as ONNX files, taken from the `resemble-perth` package's weights.

    python -m core.provenance.export_perth OUT_DIR

PerthNet (Resemble AI, MIT) marks speech by adding a learned residual to the 0-2 kHz magnitudes of its 32 kHz
spectrogram, and reads the mark back from any such spectrogram. Serving needs only the convolution stacks; the
spectrograms, masks and averaging around them are `core.provenance.watermark`'s numpy. This runs where torch is
installed (set-up, an image's build stage); the services that mark or check audio load the ONNX files with ONNX
Runtime and never import torch or the package.
"""

import argparse
import importlib.util
import json
import warnings
from pathlib import Path

import torch
from torch import nn

CHECKPOINT = "perth_net/pretrained/implicit/perth_net_250000.pth.tar"
HPARAMS = "perth_net/pretrained/implicit/hparams.yaml"
BRANCHES = ("slow", "normal", "fast")  # the decoder reads the spectrogram at 1.25x, 1x and 0.75x its length


def _stack(subband: int, hidden: int, out: int) -> nn.Sequential:
    """The layout of every PerthNet stack: 1x1 in, five 7-wide convolutions, 1x1 out (LeakyReLU between)."""
    layers: list[nn.Module] = [nn.Conv1d(subband, hidden, 1), nn.LeakyReLU()]
    for _ in range(5):
        layers += [nn.Conv1d(hidden, hidden, 7, padding=3), nn.LeakyReLU()]
    layers.append(nn.Conv1d(hidden, out, 1))
    return nn.Sequential(*layers)


def _load(stack: nn.Sequential, weights: dict[str, torch.Tensor], prefix: str) -> nn.Sequential:
    convs = [m for m in stack if isinstance(m, nn.Conv1d)]
    for i, conv in enumerate(convs):
        conv.weight.data.copy_(weights[f"{prefix}.{i}.conv.weight"])
        conv.bias.data.copy_(weights[f"{prefix}.{i}.conv.bias"])
    return stack.eval()


class _Decoder(nn.Module):
    def __init__(self, branches: list[nn.Sequential]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, slow, normal, fast):
        return tuple(branch(x) for branch, x in zip(self.branches, (slow, normal, fast)))


def _package_file(relative: str) -> Path:
    spec = importlib.util.find_spec("perth")  # located, not imported: its __init__ needs librosa
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("resemble-perth is not installed (core/requirements-watermark-export.txt)")
    return Path(spec.submodule_search_locations[0], relative)


def export(out: Path) -> None:
    weights = torch.load(_package_file(CHECKPOINT), map_location="cpu", weights_only=True)["model"]
    subband, hidden = weights["encoder.layers.0.conv.weight"].shape[1], weights["encoder.layers.0.conv.weight"].shape[0]
    encoder = _load(_stack(subband, hidden, subband), weights, "encoder.layers")
    decoder = _Decoder([_load(_stack(subband, hidden, 2), weights, f"decoder.{b}_layers") for b in BRANCHES])
    out.mkdir(parents=True, exist_ok=True)
    frames = torch.zeros(1, subband, 50)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: dynamic frame counts
        torch.onnx.export(
            encoder, (frames,), out / "encoder.onnx", input_names=["magnitudes"], output_names=["residual"],
            dynamic_axes={"magnitudes": {2: "frames"}, "residual": {2: "frames"}}, dynamo=False,
        )
        torch.onnx.export(
            decoder, (torch.zeros(1, subband, 62), frames, torch.zeros(1, subband, 37)), out / "decoder.onnx",
            input_names=[f"{b}_magnitudes" for b in BRANCHES], output_names=[f"{b}_scores" for b in BRANCHES],
            dynamic_axes={
                **{f"{b}_magnitudes": {2: f"{b}_frames"} for b in BRANCHES},
                **{f"{b}_scores": {2: f"{b}_frames"} for b in BRANCHES},
            },
            dynamo=False,
        )
    hparams = dict(line.split(": ", 1) for line in _package_file(HPARAMS).read_text().splitlines() if ": " in line)
    spectrum = {k: int(hparams[k]) for k in ("sample_rate", "n_fft", "hop_size", "window_size")}
    spectrum |= {"magnitude_floor": float(hparams["stft_magnitude_min"]), "subband": subband}
    (out / "spectrum.json").write_text(json.dumps(spectrum, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    export(parser.parse_args().out)


if __name__ == "__main__":
    main()
