"""Stable Diffusion 3 / 3.5: an MM-DiT (3.5 Large 38 blocks at 2432 wide, Medium 24 at 1536 with a second
self-attention in its first 13 blocks), two CLIP encoders and T5-XXL, trained by flow matching."""

from __future__ import annotations

from typing import Any

from masuka.models.architectures.base import KNOWN_WIDTHS, LoraLayers, Match, Profile, Training, width_match
from masuka.models.architectures.flux import FLUX2_NAMES, JOINT_ATTENTION, QWEN_NAMES
from masuka.models.architectures.shared import (
    CLIP_G,
    CLIP_L,
    T5_XXL,
    VAE_16,
    clip_encoder,
    clip_tokenizer,
    t5_encoder,
    t5_tokenizer,
    tiny_vae,
)

WIDTHS = {1536, 2432}
MAX_BLOCKS = 38


def matches_lora(layers: LoraLayers) -> Match:
    if layers.has(r"joint_blocks_\d+_(x|context)_block_"):  # kohya / original names
        return width_match(layers.widths(r"joint_blocks_\d+_x_block_attn_qkv"), WIDTHS, KNOWN_WIDTHS - WIDTHS)
    blocks = layers.indices(r"transformer_blocks_(\d+)_")
    if (not blocks or max(blocks) >= MAX_BLOCKS or layers.has(r"single_transformer_blocks_")
            or layers.has(r"transformer_blocks_\d+_attn1_") or any(layers.has(n) for n in FLUX2_NAMES)
            or layers.has(QWEN_NAMES)):
        return Match.NO
    return width_match(layers.widths(r"transformer_blocks_\d+_attn_to_[qkv]$"), WIDTHS, KNOWN_WIDTHS - WIDTHS)


def tiny_components(seed: int = 0) -> dict[str, Any]:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

    torch.manual_seed(seed)
    return dict(
        transformer=SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, num_layers=1,
                                          attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                          joint_attention_dim=32, pooled_projection_dim=64, out_channels=4,
                                          pos_embed_max_size=32),
        text_encoder=clip_encoder("CLIPTextModelWithProjection"), tokenizer=clip_tokenizer(),
        text_encoder_2=clip_encoder("CLIPTextModelWithProjection"), tokenizer_2=clip_tokenizer(),
        text_encoder_3=t5_encoder(), tokenizer_3=t5_tokenizer(),
        vae=tiny_vae(4, shift_factor=0.0609, scaling_factor=1.5035),
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


_TRANSFORMER = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, attention_head_dim=64,
                    joint_attention_dim=4096, pooled_projection_dim=2048, qk_norm="rms_norm")


def _real(**transformer: Any) -> dict[str, tuple[str, dict]]:
    return {"transformer": ("SD3Transformer2DModel", dict(_TRANSFORMER, **transformer)),
            "text_encoder": ("CLIPTextModelWithProjection", CLIP_L),
            "text_encoder_2": ("CLIPTextModelWithProjection", CLIP_G), "text_encoder_3": ("T5EncoderModel", T5_XXL),
            "vae": ("AutoencoderKL", dict(VAE_16, scaling_factor=1.5305, shift_factor=0.0609)),
            "scheduler": ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0))}


PROFILE = Profile(
    id="sd3", label="SD3",
    pipelines={"txt2img": "StableDiffusion3Pipeline", "img2img": "StableDiffusion3Img2ImgPipeline",
               "inpaint": "StableDiffusion3InpaintPipeline"},
    matches_lora=matches_lora, tiny_components=tiny_components,
    big_text_encoder="text_encoder_3",
    defaults=dict(steps=28, guidance=3.5, width=1024, height=1024),
    # ZeroGPU seconds per step per megapixel: as FLUX.1: SD3.5 Large's 8B transformer, with a margin
    step_seconds=0.25,
    memory_gb={"full": 28, "model_offload": 18, "fp8_offload": 10.5, "group_offload": 4},
    kohya_versions=("sd3",),
    training=Training(trainer="SD3", target_modules=JOINT_ATTENTION,
                      defaults=dict(lr=1e-4, resolution=1024, guidance=1.0, sample_steps=28), fp8_below_gb=24),
    real_models={
        "sd35-large": _real(num_layers=38, num_attention_heads=38, caption_projection_dim=2432,
                            pos_embed_max_size=192),
        "sd35-medium": _real(num_layers=24, num_attention_heads=24, caption_projection_dim=1536,
                             pos_embed_max_size=384, dual_attention_layers=tuple(range(13))),
    },
)
