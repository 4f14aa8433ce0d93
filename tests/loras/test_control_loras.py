"""A FLUX.1 Canny/Depth [dev] control LoRA (its x_embedder takes 128 inputs: the latents and the control image's;
it replaces the attention norms) is refused when inspected (imported, picked), in any of its formats, saying what
it is, with or without those norms when its layers are FLUX.1's alone; the same layers without the x_embedder are a
FLUX.1 LoRA, and a 128-input x_embedder with layers FLUX.2 [klein] has too (and no norms) is a FLUX.2 one."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from masuka.errors import InvalidInput
from masuka.loras.files import inspect_lora

#: (prefix, A, B, the blocks' layers with their outputs, the input layer's name, a norm it replaces) per format
FORMATS = {
    "diffusers": ("transformer.", "lora_A", "lora_B",
                  {"transformer_blocks.0.attn.to_q": 3072, "single_transformer_blocks.0.attn.to_q": 3072},
                  "x_embedder", "transformer_blocks.0.attn.norm_q.weight"),
    "bfl": ("diffusion_model.", "lora_A", "lora_B",
            {"double_blocks.0.img_attn.qkv": 9216, "single_blocks.0.linear1": 21504}, "img_in",
            "double_blocks.0.img_attn.norm.query_norm.scale"),
    "kohya": ("lora_unet_", "lora_down", "lora_up",
              {"double_blocks_0_img_attn_qkv": 9216, "single_blocks_0_linear1": 21504}, "img_in",
              "double_blocks_0_img_attn_norm_query_norm.scale"),
}


@pytest.mark.parametrize("form", FORMATS)
def test_a_flux_control_lora_is_refused_when_inspected(tmp_path, form):
    prefix, down, up, blocks, input_layer, norm = FORMATS[form]
    tensors = {}
    for layer, outputs in blocks.items():
        tensors[f"{prefix}{layer}.{down}.weight"] = torch.zeros(1, 3072)
        tensors[f"{prefix}{layer}.{up}.weight"] = torch.zeros(outputs, 1)
    save_file(tensors, str(tmp_path / "style.safetensors"))
    assert inspect_lora(tmp_path / "style.safetensors").architecture == "flux"
    tensors[f"{prefix}{input_layer}.{down}.weight"] = torch.zeros(1, 128)
    tensors[f"{prefix}{input_layer}.{up}.weight"] = torch.zeros(3072, 1)
    save_file(tensors, str(tmp_path / "no-norms.safetensors"))
    with pytest.raises(InvalidInput, match="is a FLUX.1 Canny/Depth"):  # single blocks' to_q/linear1: FLUX.1 only
        inspect_lora(tmp_path / "no-norms.safetensors")
    tensors[f"{prefix}{norm}"] = torch.ones(128)
    save_file(tensors, str(tmp_path / "canny.safetensors"))
    with pytest.raises(InvalidInput) as refused:
        inspect_lora(tmp_path / "canny.safetensors")
    assert str(refused.value) == ("LoRA 'canny.safetensors' is a FLUX.1 Canny/Depth [dev] control LoRA (its "
                                  "x_embedder takes a control image too), which MASUKA does not run: choose a LoRA "
                                  "made for FLUX.1.")


def test_a_128_input_x_embedder_with_klein_s_layers_and_no_norms_is_a_flux2_lora(tmp_path):
    """FLUX.2 [klein] 4B's blocks are as wide as FLUX.1's and its x_embedder takes 128 inputs: a LoRA of its first
    blocks' attention and that layer reads as FLUX.2, not as a control LoRA."""
    tensors = {}
    for layer, inputs, outputs in (("transformer_blocks.0.attn.to_q", 3072, 3072), ("x_embedder", 128, 3072)):
        tensors[f"transformer.{layer}.lora_A.weight"] = torch.zeros(1, inputs)
        tensors[f"transformer.{layer}.lora_B.weight"] = torch.zeros(outputs, 1)
    save_file(tensors, str(tmp_path / "klein.safetensors"))
    assert inspect_lora(tmp_path / "klein.safetensors").architecture == "flux2"
