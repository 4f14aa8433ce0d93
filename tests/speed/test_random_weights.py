"""Real architectures with random weights: the published sizes, built on the meta device in seconds, and
materialised in the target dtype with working buffers."""

from __future__ import annotations

import pytest
import torch

from masuka.models.architectures.shared import TINY_CLIP
from masuka.models.synthetic import random_module, real_pipeline


def billions(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e9


def test_flux_dev_has_the_real_size_and_costs_no_memory():
    pipe = real_pipeline("flux-dev")
    assert billions(pipe.transformer) == pytest.approx(11.90, abs=0.01)
    assert billions(pipe.text_encoder_2) == pytest.approx(4.76, abs=0.01)  # T5-XXL encoder
    assert billions(pipe.text_encoder) == pytest.approx(0.123, abs=0.001)  # CLIP-L
    assert pipe.vae.config.latent_channels == 16 and pipe.transformer.config.guidance_embeds
    assert all(p.is_meta for p in pipe.transformer.parameters())


@pytest.mark.parametrize("model, denoiser, text_encoder", [
    ("flux2-klein-4b", 3.876, 4.022),   # FLUX.2 [klein] 4B, Qwen3-4B
    ("qwen-image", 20.43, 8.292),       # Qwen-Image 20B, Qwen2.5-VL-7B (with its vision tower)
    ("z-image-turbo", 6.155, 4.022),    # Z-Image 6B, Qwen3-4B
])
def test_new_architectures_have_their_published_sizes(model, denoiser, text_encoder):
    pipe = real_pipeline(model)
    assert billions(pipe.transformer) == pytest.approx(denoiser, abs=0.01)
    assert billions(pipe.text_encoder) == pytest.approx(text_encoder, abs=0.01)
    assert all(p.is_meta for p in pipe.transformer.parameters())


def test_sdxl_unet_has_the_real_size():
    pipe = real_pipeline("sdxl")
    assert billions(pipe.unet) == pytest.approx(2.567, abs=0.005)
    assert billions(pipe.text_encoder_2) == pytest.approx(0.695, abs=0.001)  # OpenCLIP bigG


def test_materialised_modules_run_in_the_target_dtype():
    config = dict(vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    clip = random_module("CLIPTextModel", config, "cpu", torch.bfloat16, torch.Generator("cpu").manual_seed(0))
    assert not any(p.is_meta for p in clip.parameters())
    assert {p.dtype for p in clip.parameters()} == {torch.bfloat16}
    output = clip(torch.tensor([[0, 5, 9, 2]])).last_hidden_state
    assert output.shape == (1, 4, 32) and torch.isfinite(output).all() and output.abs().sum() > 0


def test_a_random_weight_pipeline_materialised_on_the_device_makes_an_image(monkeypatch):
    """The real-architecture builder end to end, on a miniature of Flux's component list."""
    from masuka.models import synthetic

    miniature = {
        "transformer": ("FluxTransformer2DModel", dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                                       attention_head_dim=16, num_attention_heads=2,
                                                       joint_attention_dim=32, pooled_projection_dim=32,
                                                       axes_dims_rope=(4, 4, 8))),
        "text_encoder": ("CLIPTextModel", TINY_CLIP),
        "text_encoder_2": ("T5EncoderModel", dict(vocab_size=1000, d_model=32, d_ff=37, d_kv=8, num_heads=4,
                                                  num_layers=2, relative_attention_num_buckets=8)),
        "vae": ("AutoencoderKL", dict(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                                      up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1,
                                      latent_channels=4, norm_num_groups=4, use_quant_conv=False,
                                      use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159)),
        "scheduler": ("FlowMatchEulerDiscreteScheduler", {}),
    }
    monkeypatch.setitem(synthetic.REAL_MODELS, "miniature-flux", ("flux", miniature))
    pipe = real_pipeline("miniature-flux", "cpu", torch.float32)
    assert not any(p.is_meta for p in pipe.transformer.parameters())
    image = pipe("a red fox", num_inference_steps=2, width=64, height=48, max_sequence_length=32,
                 generator=torch.Generator("cpu").manual_seed(0)).images[0]
    assert image.size == (64, 48) and len(set(image.getdata())) > 1


@pytest.mark.parametrize("model, transformer, text_encoder, pipeline", [
    ("flux2-klein-9b", 9.08, 8.19, "Flux2KleinPipeline"),  # 8 + 24 blocks at 4096, Qwen3-8B
    ("flux2-dev", 32.22, 23.34, "Flux2Pipeline"),  # 8 + 48 blocks at 6144, Mistral-Small 3.1 with Pixtral
])
def test_flux2_dev_and_klein_9b_have_their_published_sizes(model, transformer, text_encoder, pipeline):
    pipe = real_pipeline(model)
    assert type(pipe).__name__ == pipeline
    assert billions(pipe.transformer) == pytest.approx(transformer, abs=0.01)
    assert billions(pipe.text_encoder) == pytest.approx(text_encoder, abs=0.01)


def test_flux2_dev_prompt_path_runs_with_the_offline_tokenizer(monkeypatch):
    """FLUX.2 [dev]'s text path (Mistral chat markup, hidden states 10/20/30) on a miniature Mistral-3."""
    from masuka.models import synthetic

    mistral = dict(text_config=dict(model_type="mistral", hidden_size=16, intermediate_size=16, num_hidden_layers=30,
                                    num_attention_heads=2, num_key_value_heads=2, head_dim=8, vocab_size=300),
                   vision_config=dict(model_type="pixtral", hidden_size=16, intermediate_size=16,
                                      num_hidden_layers=1, num_attention_heads=2, head_dim=8, image_size=28,
                                      patch_size=14))
    miniature = {
        "transformer": ("Flux2Transformer2DModel", dict(in_channels=16, num_layers=1, num_single_layers=1,
                                                        attention_head_dim=16, num_attention_heads=2,
                                                        joint_attention_dim=48, timestep_guidance_channels=32,
                                                        axes_dims_rope=(4, 4, 4, 4))),
        "text_encoder": ("Mistral3ForConditionalGeneration", mistral),
        "vae": ("AutoencoderKLFlux2", dict(block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4,
                                           norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False)),
        "scheduler": ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0, use_dynamic_shifting=True)),
    }
    monkeypatch.setitem(synthetic.REAL_MODELS, "flux2-dev", ("flux2", miniature))
    pipe = real_pipeline("flux2-dev", "cpu", torch.float32)
    image = pipe(prompt="a red fox", num_inference_steps=1, width=64, height=64, max_sequence_length=32,
                 generator=torch.Generator("cpu").manual_seed(0)).images[0]
    assert type(pipe).__name__ == "Flux2Pipeline" and image.size == (64, 64)
