"""Real architectures with random weights: the published sizes, built on the meta device in seconds, and
materialised in the target dtype with working buffers."""

from __future__ import annotations

import pytest
import torch

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
