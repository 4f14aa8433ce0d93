"""Z-Image (6B; Turbo distilled to 8 steps without guidance): a single-stream DiT of 30 layers at 3840 wide
(``layers.N.attention``, ``feed_forward.w1``) with noise and context refiners, Qwen3-4B as text encoder and the
FLUX.1 VAE."""

from __future__ import annotations

from typing import Any

from masuka.models.architectures.base import KNOWN_WIDTHS, LoraLayers, Match, Profile, Training, width_match
from masuka.models.architectures.flux2 import _QWEN3_4B
from masuka.models.architectures.shared import QWEN_TINY_VOCAB, VAE_16, qwen_tokenizer, tiny_vae

HIDDEN = 3840
LAYERS = r"(layers|noise_refiner|context_refiner)_\d+_(attention|feed_forward)_"


def matches_lora(layers: LoraLayers) -> Match:
    if not layers.has(LAYERS):
        return Match.NO
    return width_match(layers.widths(r"(layers|noise_refiner|context_refiner)_\d+_attention_(to_[qkv]|qkv)$"),
                       {HIDDEN}, KNOWN_WIDTHS - {HIDDEN})


def tiny_components(seed: int = 0) -> dict[str, Any]:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32,
                                           n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, norm_eps=1e-5,
                                           qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0,
                                           axes_dims=[8, 4, 4], axes_lens=[1024, 32, 32])
    with torch.no_grad():  # created with torch.empty: give them values so outputs are finite
        for name in ("x_pad_token", "cap_pad_token"):  # set in __init__, not declared on the class
            token = getattr(transformer, name)
            token.copy_(torch.ones_like(token))
    return dict(
        transformer=transformer,
        text_encoder=Qwen3Model(Qwen3Config(hidden_size=16, intermediate_size=16, num_hidden_layers=2,
                                            num_attention_heads=2, num_key_value_heads=2, head_dim=8,
                                            vocab_size=QWEN_TINY_VOCAB, max_position_embeddings=1024)),
        tokenizer=qwen_tokenizer(),
        vae=tiny_vae(4, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )


#: Z-Image-Turbo and the Z-Image base share one architecture
_REAL: dict[str, tuple[str, dict[str, Any]]] = {
    "transformer": ("ZImageTransformer2DModel", {}),
    "text_encoder": ("Qwen3Model", _QWEN3_4B),
    "vae": ("AutoencoderKL", dict(VAE_16, scaling_factor=0.3611, shift_factor=0.1159)),
    "scheduler": ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0)),
}

PROFILE = Profile(
    id="z_image", label="Z-Image",
    pipelines={"txt2img": "ZImagePipeline", "img2img": "ZImageImg2ImgPipeline", "inpaint": "ZImageInpaintPipeline"},
    matches_lora=matches_lora, tiny_components=tiny_components,
    big_text_encoder="text_encoder", cfg_above=0.0,
    defaults=dict(steps=9, guidance=0.0, width=1024, height=1024, max_sequence_length=512),
    # ZeroGPU seconds per step per megapixel: FLUX.1's figure scaled by the transformer size (6B / 12B), with a margin
    step_seconds=0.15,
    memory_gb={"full": 22, "model_offload": 14, "fp8_offload": 9, "group_offload": 5},
    kohya_versions=("z_image", "z-image", "zimage"),
    training=Training(trainer="ZImage",
                      target_modules=("attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0"),
                      defaults=dict(lr=1e-4, resolution=512, guidance=0.0, sample_steps=9), fp8_below_gb=24),
    real_models={"z-image-turbo": _REAL, "z-image": _REAL},
)
