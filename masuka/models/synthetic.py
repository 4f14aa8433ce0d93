"""Pipelines with random weights, built without any download.

``tiny`` builds miniature Flux, SD3 and SDXL pipelines (a few layers, a tokenizer written from a small
vocabulary) that run in a fraction of a second on a CPU: the test suite and CPU benchmarks load them through
the real ``from_pretrained`` path after :func:`save_tiny_pipeline` writes them to a folder.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

TINY_ARCHITECTURES = ("flux", "sd3", "sdxl")
_CLIP = dict(bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=32, intermediate_size=37,
             layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2, vocab_size=1000,
             hidden_act="gelu", projection_dim=32, max_position_embeddings=77)


def clip_tokenizer() -> Any:
    """A byte-level BPE CLIP tokenizer whose vocabulary is single characters (no merges)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in bytes_to_unicode().values():
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>", bos_token="<|startoftext|>",
                         eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=77)


def t5_tokenizer() -> Any:
    """A unigram T5 tokenizer over letters, digits and punctuation."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(c, -2.0) for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += [("\u2581" + c, -1.5) for c in string.ascii_lowercase]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def _t5_encoder(d_model: int = 32) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=1000, d_model=d_model, d_ff=37, d_kv=8, num_heads=4,
                                   num_layers=2, relative_attention_num_buckets=8))


def _vae(latent_channels: int, **extra: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 8, 8, 8), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, latent_channels=latent_channels, norm_num_groups=4,
                         sample_size=64, **extra)


def tiny_components(architecture: str, seed: int = 0) -> dict[str, Any]:
    """Random-weight components of a miniature pipeline of ``architecture`` (flux, sd3 or sdxl)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    if architecture == "flux":
        from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

        return dict(
            transformer=FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                               attention_head_dim=16, num_attention_heads=2,
                                               joint_attention_dim=32, pooled_projection_dim=32,
                                               axes_dims_rope=[4, 4, 8]),
            text_encoder=CLIPTextModel(CLIPTextConfig(**_CLIP)), tokenizer=clip_tokenizer(),
            text_encoder_2=_t5_encoder(), tokenizer_2=t5_tokenizer(),
            vae=_vae(4, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                     scaling_factor=1.5035),
            scheduler=FlowMatchEulerDiscreteScheduler(),
        )
    if architecture == "sd3":
        from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

        return dict(
            transformer=SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, num_layers=1,
                                              attention_head_dim=8, num_attention_heads=4,
                                              caption_projection_dim=32, joint_attention_dim=32,
                                              pooled_projection_dim=64, out_channels=4, pos_embed_max_size=32),
            text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**_CLIP)), tokenizer=clip_tokenizer(),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**_CLIP)), tokenizer_2=clip_tokenizer(),
            text_encoder_3=_t5_encoder(), tokenizer_3=t5_tokenizer(),
            vae=_vae(4, shift_factor=0.0609, scaling_factor=1.5035),
            scheduler=FlowMatchEulerDiscreteScheduler(),
        )
    if architecture == "sdxl":
        from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

        return dict(
            unet=UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8,
                                      in_channels=4, out_channels=4,
                                      down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                      up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                      attention_head_dim=(2, 4), use_linear_projection=True,
                                      addition_embed_type="text_time", addition_time_embed_dim=8,
                                      transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
                                      cross_attention_dim=64, norm_num_groups=1),
            text_encoder=CLIPTextModel(CLIPTextConfig(**_CLIP)), tokenizer=clip_tokenizer(),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**_CLIP)), tokenizer_2=clip_tokenizer(),
            vae=_vae(4),
            scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                             beta_schedule="scaled_linear", timestep_spacing="leading"),
        )
    raise ValueError(f"no tiny pipeline for {architecture!r}; choose one of {TINY_ARCHITECTURES}")


PIPELINE_CLASSES = {"flux": "FluxPipeline", "sd3": "StableDiffusion3Pipeline", "sdxl": "StableDiffusionXLPipeline"}


def tiny_pipeline(architecture: str, seed: int = 0) -> Any:
    import diffusers

    components = tiny_components(architecture, seed)
    if architecture == "sdxl":
        components.update(image_encoder=None, feature_extractor=None)
    if architecture == "flux":
        components.update(image_encoder=None, feature_extractor=None)
    return getattr(diffusers, PIPELINE_CLASSES[architecture])(**components)


def save_tiny_pipeline(architecture: str, folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random pipeline as a diffusers folder (safetensors) that ``from_pretrained`` loads."""
    folder = Path(folder)
    tiny_pipeline(architecture, seed).save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_video_pipeline(image_to_video: bool = False, seed: int = 0) -> Any:
    """A miniature Wan 2.x pipeline (text-to-video, or image-to-video without a CLIP image encoder as in
    Wan 2.2) with a UMT5 encoder and the T5 tokenizer above; 9 frames at 32x32 take well under a second."""
    import torch
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanPipeline,
                           WanTransformer3DModel)
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=36 if image_to_video else 16, out_channels=16, text_dim=32,
                                        freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                                        qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    components = dict(
        transformer=transformer, tokenizer=t5_tokenizer(), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=UMT5EncoderModel(UMT5Config(vocab_size=1000, d_model=32, d_ff=37, d_kv=8, num_heads=4,
                                                 num_layers=2, relative_attention_num_buckets=8)),
        vae=AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                             temperal_downsample=[False, True, True]),
    )
    if image_to_video:
        return WanImageToVideoPipeline(image_encoder=None, image_processor=None, **components)
    return WanPipeline(**components)


def save_tiny_video_pipeline(folder: str | Path, image_to_video: bool = False, seed: int = 0) -> Path:
    """Write a tiny random Wan pipeline as a diffusers folder (safetensors)."""
    folder = Path(folder)
    tiny_video_pipeline(image_to_video, seed).save_pretrained(folder, safe_serialization=True)
    return folder
