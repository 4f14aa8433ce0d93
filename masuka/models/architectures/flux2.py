"""FLUX.2: [dev] (32B; 8 double and 48 single blocks at 6144 wide, a Mistral-Small 3 text encoder) and [klein]
(4B: 5 double and 20 single blocks at 3072 wide with Qwen3-4B; 9B: 4096 wide with Qwen3-8B). Single blocks fuse
their projections (``attn.to_qkv_mlp_proj``), feed-forwards are SwiGLU (``ff.linear_in``) and the modulation is
shared by all blocks; latents are 2x2-patchified and batch-normalised by the VAE's running statistics."""

from __future__ import annotations

from typing import Any

from masuka.models.architectures.base import KNOWN_WIDTHS, LoraLayers, Match, Profile, Training, width_match
from masuka.models.architectures.flux import FLUX2_NAMES, JOINT_ATTENTION, QWEN_NAMES
from masuka.models.architectures.shared import QWEN_TINY_VOCAB, qwen_tokenizer

WIDTHS = {3072, 4096, 6144}
#: single-block fused projection (3 x width + 2 x 3 x width) and double-block SwiGLU widths of [klein] 4B
KLEIN_4B_LINEAR1, KLEIN_4B_MLP = 27648, 18432
KLEIN_4B_DOUBLE_BLOCKS = 5
PIXTRAL_NOTE = ("FLUX.2 [dev]'s tokenizer is a PixtralProcessor, which transformers builds only with torchvision "
                "installed (pip install torchvision, the build matching your torch; the CPU-only torch wheel has "
                "no importable torchvision). FLUX.2 [klein] needs no torchvision.")


def matches_lora(layers: LoraLayers) -> Match:
    if layers.has(r"(double|single)_blocks_\d+_"):  # BFL / kohya / ai-toolkit original names
        widths = layers.widths(r"double_blocks_\d+_img_attn_qkv|single_blocks_\d+_linear1")
        if widths & {4096, 6144}:
            return Match.CERTAIN
        wide = layers.outputs(r"single_blocks_\d+_linear1") | layers.outputs(r"double_blocks_\d+_img_mlp_0")
        return Match.CERTAIN if wide & {KLEIN_4B_LINEAR1, KLEIN_4B_MLP} else Match.NO
    if any(layers.has(name) for name in FLUX2_NAMES):
        widths = layers.widths(r"(single_)?transformer_blocks_\d+_attn_to_")
        return width_match(widths, WIDTHS, KNOWN_WIDTHS - WIDTHS)
    double = layers.indices(r"transformer_blocks_(\d+)_attn_")
    if (not double or layers.has(r"single_transformer_blocks_") or layers.has(QWEN_NAMES)
            or layers.has(r"transformer_blocks_\d+_(ff_net|norm1|attn1|attn2)")):
        return Match.NO
    widths = layers.widths(r"transformer_blocks_\d+_attn_to_[qkv]$")
    if widths & {4096, 6144}:
        return width_match(widths, {4096, 6144}, KNOWN_WIDTHS)
    if widths == {3072}:
        return Match.FITS if max(double) < KLEIN_4B_DOUBLE_BLOCKS else Match.NO
    return width_match(widths, set(), KNOWN_WIDTHS)


def tiny_components(seed: int = 0) -> dict[str, Any]:
    """A miniature [klein]: the Qwen3 encoder has the 27 layers whose states (9, 18, 27) the pipeline stacks."""
    import torch
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    return dict(
        transformer=Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=48,
                                            timestep_guidance_channels=32, axes_dims_rope=[4, 4, 4, 4],
                                            guidance_embeds=False),
        text_encoder=Qwen3ForCausalLM(Qwen3Config(hidden_size=16, intermediate_size=16, num_hidden_layers=27,
                                                  num_attention_heads=2, num_key_value_heads=2, head_dim=8,
                                                  vocab_size=QWEN_TINY_VOCAB, max_position_embeddings=1024)),
        tokenizer=qwen_tokenizer(),
        vae=AutoencoderKLFlux2(block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4,
                               norm_num_groups=4, sample_size=64, use_quant_conv=False, use_post_quant_conv=False),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
    )


_QWEN3_4B: dict[str, Any] = dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                 num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                 rope_theta=1000000.0, tie_word_embeddings=True)
_KLEIN_4B: dict[str, tuple[str, dict[str, Any]]] = {
    "transformer": ("Flux2Transformer2DModel", dict(
        patch_size=1, in_channels=128, num_layers=5, num_single_layers=20, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=3 * 2560, timestep_guidance_channels=256, mlp_ratio=3.0,
        axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, guidance_embeds=False)),
    "text_encoder": ("Qwen3ForCausalLM", _QWEN3_4B),
    "vae": ("AutoencoderKLFlux2", {}),  # its defaults are the published VAE
    "scheduler": ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0, use_dynamic_shifting=True)),
}

_QWEN3_8B = dict(_QWEN3_4B, hidden_size=4096, intermediate_size=12288, tie_word_embeddings=False)
_KLEIN_9B = dict(_KLEIN_4B, transformer=("Flux2Transformer2DModel", dict(
    _KLEIN_4B["transformer"][1], num_layers=8, num_single_layers=24, num_attention_heads=32,
    joint_attention_dim=3 * 4096)), text_encoder=("Qwen3ForCausalLM", _QWEN3_8B))
#: Mistral-Small 3.1 24B (text) with its Pixtral vision tower, as FLUX.2 [dev] ships it
_MISTRAL_SMALL = dict(
    text_config=dict(model_type="mistral", hidden_size=5120, intermediate_size=32768, num_hidden_layers=40,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=131072,
                     max_position_embeddings=131072, rope_theta=1000000000.0),
    vision_config=dict(model_type="pixtral", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                       num_attention_heads=16, head_dim=64, image_size=1540, patch_size=14),
    spatial_merge_size=2, image_token_index=10, projector_hidden_act="gelu", multimodal_projector_bias=False)
_DEV: dict[str, tuple[str, dict[str, Any]]] = {
    "transformer": ("Flux2Transformer2DModel", {}),  # its defaults are FLUX.2 [dev]: 8 + 48 blocks, 6144 wide
    "text_encoder": ("Mistral3ForConditionalGeneration", _MISTRAL_SMALL),
    "vae": ("AutoencoderKLFlux2", {}),
    "scheduler": ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0, use_dynamic_shifting=True)),
}

PROFILE = Profile(
    id="flux2", label="FLUX.2",
    pipelines={"txt2img": "Flux2KleinPipeline", "inpaint": "Flux2KleinInpaintPipeline", "edit": "Flux2KleinPipeline"},
    also_covers=("Flux2Pipeline",),
    edit_pipelines={"Flux2KleinPipeline": 4, "Flux2Pipeline": 10},  # the text-to-image pipelines take references
    matches_lora=matches_lora, tiny_components=tiny_components,
    big_text_encoder="text_encoder", negative_prompt=False,
    defaults=dict(steps=4, guidance=1.0, width=1024, height=1024, max_sequence_length=512),
    # ZeroGPU seconds per step per megapixel: FLUX.1's figure scaled by the largest member's transformer
    # (FLUX.2 [dev] 32B / FLUX.1 12B); [klein] (4B, 9B) runs 4 steps, so the margin costs it seconds
    step_seconds=0.7,
    memory_gb={"full": 20, "model_offload": 13, "fp8_offload": 9, "group_offload": 5},
    kohya_versions=("flux2", "flux.2", "flux-2"),
    training=Training(
        trainer="Flux2",
        target_modules=JOINT_ATTENTION + ("attn.to_qkv_mlp_proj", "ff.linear_in", "ff.linear_out",
                                          "ff_context.linear_in", "ff_context.linear_out"),
        defaults=dict(lr=1e-4, resolution=512, guidance=1.0, sample_steps=4), fp8_below_gb=24,
        untrainable={"Flux2Pipeline": "FLUX.2 [dev]'s 32B transformer and 24B text encoder fit none of the presets "
                                      "(the largest is 40gb); train a LoRA on FLUX.2 [klein] instead"}),
    real_models={"flux2-klein-4b": _KLEIN_4B, "flux2-klein-9b": _KLEIN_9B, "flux2-dev": _DEV},
    requires={"Flux2Pipeline": "torchvision"}, notes=PIXTRAL_NOTE,
)
