"""Tiny ESRGAN upscaler files with random weights, laid out as Real-ESRGAN's ``.pth`` files are (BasicSR's key
names under ``params_ema``): spandrel has to recognise them as it does a downloaded one."""

from __future__ import annotations

from pathlib import Path


def write_esrgan(path: Path, scale: int = 4, features: int = 8, blocks: int = 1, seed: int = 0) -> Path:
    """An RRDBNet (``blocks`` residual-in-residual dense blocks, ``features`` channels) upscaling ``scale`` (2 or
    4) times, saved as ``.pth`` (``torch.save``) or ``.safetensors`` after the file's suffix."""
    import torch

    grow = 32  # spandrel's RRDBNet has a fixed growth of 32 channels
    generator = torch.Generator().manual_seed(seed)
    shapes = {"conv_first": (features, 3)}
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for conv in range(1, 5):
                shapes[f"body.{block}.rdb{rdb}.conv{conv}"] = (grow, features + (conv - 1) * grow)
            shapes[f"body.{block}.rdb{rdb}.conv5"] = (features, features + 4 * grow)
    shapes["conv_body"] = (features, features)
    for up in range(1, {2: 1, 4: 2}[scale] + 1):
        shapes[f"conv_up{up}"] = (features, features)
    shapes.update(conv_hr=(features, features), conv_last=(3, features))
    state = {}
    for name, (out_channels, in_channels) in shapes.items():
        spread = (in_channels * 9) ** -0.5
        state[f"{name}.weight"] = torch.randn(out_channels, in_channels, 3, 3, generator=generator) * spread
        state[f"{name}.bias"] = torch.randn(out_channels, generator=generator) * 0.01
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, path)
    else:
        torch.save({"params_ema": state}, path)
    return path
