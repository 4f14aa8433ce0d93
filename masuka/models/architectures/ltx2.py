"""LTX-2: one audio-video DiT that makes a clip with its soundtrack, a Gemma 3 text encoder whose hidden states
go through text connectors, a video VAE (32x32 spatial, 8x temporal compression), an audio VAE and a vocoder.

The same weights animate a first frame (``LTX2ImageToVideoPipeline``). The call takes the frame rate (the
positions of frames and audio depend on it); spatio-temporal guidance runs on block 28 of the published 48, or
the middle block of a smaller model.
"""

from __future__ import annotations

import string
from typing import Any

from masuka.models.architectures.video_base import VideoProfile

TEXT, IMAGE = "LTX2Pipeline", "LTX2ImageToVideoPipeline"
STG_BLOCK = 28


def call_arguments(pipe: Any, fps: int) -> dict[str, Any]:
    layers = pipe.transformer.config.num_layers
    return {"frame_rate": float(fps), "spatio_temporal_guidance_blocks": [min(STG_BLOCK, layers // 2)]}


def gemma_tokenizer() -> Any:
    """A Gemma tokenizer over single characters (no merges), written in memory."""
    from transformers import GemmaTokenizer

    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "\u2581"]
    tokens += list(string.ascii_letters + string.digits + string.punctuation)
    tokens += ["\u2581" + c for c in string.ascii_lowercase]
    return GemmaTokenizer(vocab={token: index for index, token in enumerate(tokens)}, merges=[])


def tiny_components(seed: int = 0) -> dict[str, Any]:
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    torch.manual_seed(seed)
    tokenizer = gemma_tokenizer()
    text = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=512,
                            sliding_window=64)
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=32, patch_size=8)
    text_encoder = Gemma3ForConditionalGeneration(Gemma3Config(text_config=text, vision_config=vision,
                                                               mm_tokens_per_image=4))
    audio_vae = AutoencoderKLLTX2Audio(base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1,
                                       attn_resolutions=None, in_channels=2, resolution=32, latent_channels=2,
                                       norm_type="pixel", causality_axis="height", dropout=0.0,
                                       mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160,
                                       is_causal=True, mel_bins=8)
    return dict(
        tokenizer=tokenizer, text_encoder=text_encoder, scheduler=FlowMatchEulerDiscreteScheduler(),
        transformer=LTX2VideoTransformer3DModel(
            in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
            cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
            audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
            caption_channels=32, rope_double_precision=False, rope_type="split"),
        connectors=LTX2TextConnectors(
            caption_channels=32, text_proj_in_factor=text.num_hidden_layers + 1,
            video_connector_num_attention_heads=4, video_connector_attention_head_dim=8,
            video_connector_num_layers=1, video_connector_num_learnable_registers=None,
            audio_connector_num_attention_heads=4, audio_connector_attention_head_dim=8,
            audio_connector_num_layers=1, audio_connector_num_learnable_registers=None,
            connector_rope_base_seq_len=32, rope_double_precision=False, rope_type="split"),
        vae=AutoencoderKLLTX2Video(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,),
            decoder_block_out_channels=(8,), layers_per_block=(1,), decoder_layers_per_block=(1, 1),
            spatio_temporal_scaling=(True,), decoder_spatio_temporal_scaling=(True,),
            decoder_inject_noise=(False, False), downsample_type=("spatial",), upsample_residual=(False,),
            upsample_factor=(1,), timestep_conditioning=False, patch_size=1, patch_size_t=1),
        audio_vae=audio_vae,
        vocoder=LTX2Vocoder(in_channels=2 * 8, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[4, 4],
                            upsample_factors=[2, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
                            output_sampling_rate=16000),
        processor=None, prompt_enhancer=None, duration_head=None,
    )


PROFILE = VideoProfile(
    id="ltx2", label="LTX-2", pipelines=(TEXT, IMAGE), image_pipeline=lambda _class, _config: IMAGE,
    text_pipeline=lambda _class, _config: TEXT,
    tiny={"ltx2": (TEXT, tiny_components)}, call_arguments=call_arguments, audio=True,
)
