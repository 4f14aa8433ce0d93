"""Wan 2.1 and 2.2 video: a DiT over a causal 3D VAE, a UMT5 text encoder, flow matching.

Wan 2.2 TI2V-5B makes text- and image-to-video with one set of weights (its VAE compresses 16x16 and the
first frame is a clean latent: ``expand_timesteps``), so a first frame moves the loaded weights into
``WanImageToVideoPipeline``. Wan 2.2 A14B has two experts: ``transformer`` denoises the high-noise steps and
``transformer_2`` the rest, switching at ``boundary_ratio`` of the schedule; memory plans offload and store
both in fp8. Wan 2.1 and the 2.2 I2V A14B checkpoint load as published (their class says what they do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from masuka.models.architectures.shared import t5_tokenizer
from masuka.models.architectures.video_base import VideoProfile

TEXT, IMAGE = "WanPipeline", "WanImageToVideoPipeline"


def image_pipeline(pipeline_class: str, config: Mapping[str, Any]) -> str | None:
    """TI2V weights animate a first frame; a text-to-video checkpoint of Wan 2.1 or A14B does not."""
    if pipeline_class == IMAGE:
        return IMAGE
    return IMAGE if config.get("expand_timesteps") else None


def text_pipeline(pipeline_class: str, config: Mapping[str, Any]) -> str | None:
    """A text-to-video checkpoint, and TI2V weights whichever class they were saved as, make a video from text; Wan
    2.1's image-to-video weights do not."""
    return TEXT if pipeline_class == TEXT or config.get("expand_timesteps") else None


def _transformer(channels: int, out_channels: int = 16) -> Any:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                 in_channels=channels, out_channels=out_channels, text_dim=32, freq_dim=256,
                                 ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                 rope_max_seq_len=32)


def _shared(seed: int, **vae: Any) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    return dict(
        tokenizer=t5_tokenizer(),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0),
        text_encoder=UMT5EncoderModel(UMT5Config(vocab_size=1000, d_model=32, d_ff=37, d_kv=8, num_heads=4,
                                                 num_layers=2, relative_attention_num_buckets=8)),
        vae=AutoencoderKLWan(base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                             temperal_downsample=[False, True, True], **(vae or dict(z_dim=16))),
    )


def tiny_wan21(seed: int = 0) -> dict[str, Any]:
    """Wan 2.1 text-to-video: one transformer over a 16-channel VAE that compresses 8x8."""
    return dict(_shared(seed), transformer=_transformer(16))


def tiny_wan21_i2v(seed: int = 0) -> dict[str, Any]:
    """Wan 2.x image-to-video without a CLIP image encoder: the first frame's latents join the noise."""
    return dict(_shared(seed), transformer=_transformer(36), image_encoder=None, image_processor=None)


def tiny_wan22_ti2v(seed: int = 0) -> dict[str, Any]:
    """Wan 2.2 TI2V-5B: a 48-channel VAE compressing 16x16 (2x2 patches of 8x8), ``expand_timesteps``."""
    vae = dict(z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2, latents_mean=[0.0] * 48,
               latents_std=[1.0] * 48, scale_factor_spatial=16, scale_factor_temporal=4)
    return dict(_shared(seed, **vae), transformer=_transformer(48, 48), transformer_2=None, boundary_ratio=None,
                expand_timesteps=True)


def tiny_wan22_a14b(seed: int = 0) -> dict[str, Any]:
    """Wan 2.2 A14B text-to-video: a high-noise and a low-noise expert, switching at 0.875 of the schedule."""
    components = _shared(seed)
    return dict(components, transformer=_transformer(16), transformer_2=_transformer(16), boundary_ratio=0.875)


PROFILE = VideoProfile(
    id="wan", label="Wan 2.x", pipelines=(TEXT, IMAGE), image_pipeline=image_pipeline,
    text_pipeline=text_pipeline,
    tiny={"wan2.1": (TEXT, tiny_wan21), "wan2.1-i2v": (IMAGE, tiny_wan21_i2v),
          "wan2.2-ti2v": (TEXT, tiny_wan22_ti2v), "wan2.2-a14b": (TEXT, tiny_wan22_a14b)},
)
