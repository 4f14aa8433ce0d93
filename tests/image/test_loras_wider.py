"""A FLUX.1 LoRA with layers wider than the model's (a Canny/Depth control LoRA's x_embedder, a file for another
size of FLUX.1) is refused before diffusers widens the model's layers for it, so the loaded model keeps working
for every later request, with no LoRA or another."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.lora_weights import _own_layers, _undo_widening


def variant(good, out, widen_all: bool):
    """``good`` with x_embedder's LoRA taking twice the model's inputs (a control LoRA), or with every layer's
    LoRA twice as wide (a file for another size of the model)."""
    tensors, metadata = load_file(good), safe_open(str(good), "pt").metadata()
    if widen_all:
        tensors = {k: torch.randn(v.shape[0], v.shape[1] * 2) * 0.02 if "lora_A" in k else v
                   for k, v in tensors.items()}
    else:
        tensors["transformer.x_embedder.lora_A.weight"] = torch.randn(4, 32) * 0.02  # the model's takes 16
        tensors["transformer.x_embedder.lora_B.weight"] = torch.randn(32, 4) * 0.02
    save_file(tensors, str(out), metadata=metadata)
    return out


def make(studio, model, loras=()):
    request = ImageRequest(prompt="a fox", model=str(model), steps=1, width=64, height=64, seed=1, loras=list(loras))
    return np.asarray(Image.open(generate_images(studio, request, allow_any_path=True)[0].path), dtype=np.int16)


@pytest.mark.parametrize(("widen_all", "named"),
                         [(False, "x_embedder layer takes 32 inputs where the model's takes 16"),
                          (True, "layer takes 64 inputs where the model's takes 32")])
def test_a_wider_flux_lora_is_refused_and_the_model_stays_as_it_was(studio, tiny_model, tiny_lora, tmp_path,
                                                                    widen_all, named):
    model, good = tiny_model("flux"), tiny_lora("flux")
    wider = variant(good, tmp_path / "control.safetensors", widen_all)
    plain, styled = make(studio, model), make(studio, model, [(str(good), 0.7)])
    for loras in ([(str(wider), 1.0)], [(str(good), 0.7), (str(wider), 1.0)]):
        with pytest.raises(InvalidInput) as refused:
            make(studio, model, loras)
        message = str(refused.value)
        assert "\n" not in message and message.startswith("LoRA 'control' was made for another size of FLUX.1 than "
                                                          "this model, or for a control variant") and named in message
        assert np.array_equal(make(studio, model), plain), "the loaded model still makes the same plain image"
        assert np.array_equal(make(studio, model, [(str(good), 0.7)]), styled), "and takes another LoRA as before"
    assert studio.models.loads == 1, "all on the one loaded model"


@pytest.mark.parametrize("widen_all", [False, True])
def test_layers_widened_by_a_load_are_put_back(tiny_model, tiny_lora, tmp_path, widen_all):
    """The backstop, where a widening load got past the check: the model's own layers go back, nested ones too
    (diffusers' own reset restores only top-level layers)."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_model("flux"), use_safetensors=True)
    wider = variant(tiny_lora("flux"), tmp_path / "wider.safetensors", widen_all)
    run = dict(prompt="a fox", num_inference_steps=1, width=64, height=64, output_type="np")
    plain = pipe(**run, generator=torch.Generator().manual_seed(1)).images
    own = _own_layers(pipe)
    pipe.load_lora_weights(str(wider), adapter_name="wider")
    assert pipe.transformer._overwritten_params, "diffusers widened the model's layers"
    assert _undo_widening(pipe, own)
    assert all(pipe.transformer.get_submodule(name) is layer for name, layer in own.items())
    assert pipe.transformer.config.in_channels == 16 and not pipe.get_list_adapters().get("transformer")
    assert np.array_equal(pipe(**run, generator=torch.Generator().manual_seed(1)).images, plain)
    assert not _undo_widening(pipe, own), "nothing left to undo"
