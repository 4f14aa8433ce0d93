"""LoRA files for the tiny pipelines (random, non-zero weights saved the way diffusers saves LoRAs), and a striped
photo with a mask to start images from."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw


def write_random_lora(model_dir: Path, out: Path, rank: int = 4, seed: int = 0) -> Path:
    """Attach a peft LoRA with random A and B to the denoiser of ``model_dir`` and save it as safetensors."""
    import torch
    from diffusers import DiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = DiffusionPipeline.from_pretrained(model_dir, use_safetensors=True)
    denoiser_name = "transformer" if hasattr(pipe, "transformer") else "unet"
    denoiser = getattr(pipe, denoiser_name)
    denoiser.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                    init_lora_weights=False))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in denoiser.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.5)
    layers = get_peft_model_state_dict(denoiser)
    out.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(out.parent, weight_name=out.name, **{f"{denoiser_name}_lora_layers": layers})
    return out


@pytest.fixture(scope="session")
def tiny_lora(tiny_model, tmp_path_factory):
    """``tiny_lora("flux", seed=0)`` -> path of a LoRA .safetensors for that tiny pipeline."""
    made: dict[tuple, Path] = {}

    def make(architecture: str, seed: int = 0) -> Path:
        key = (architecture, seed)
        if key not in made:
            folder = tmp_path_factory.mktemp(f"lora-{architecture}")
            made[key] = write_random_lora(tiny_model(architecture), folder / f"{architecture}-style-{seed}.safetensors",
                                          seed=seed)
        return made[key]

    return make


def striped_pictures(folder: Path, width: int, height: int, square: tuple[int, int, int, int]) -> tuple[Path, Path]:
    """A striped ``width`` x ``height`` photo and a mask whose white ``square`` (left, top, right, bottom) is the
    part to repaint, saved in ``folder``."""
    photo = Image.new("RGB", (width, height), "navy")
    draw = ImageDraw.Draw(photo)
    for x in range(0, width, 12):
        draw.rectangle((x, 0, x + 5, height), fill=(250, 200, 40))
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).rectangle(square, fill=255)
    photo.save(folder / "photo.png")
    mask.save(folder / "mask.png")
    return folder / "photo.png", folder / "mask.png"


@pytest.fixture
def pictures(tmp_path):
    """A striped 96x80 photo and a mask whose white square is the part to repaint."""
    return striped_pictures(tmp_path, 96, 80, (24, 16, 71, 63))
