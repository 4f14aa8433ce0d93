"""FLUX.1 ([dev], [schnell] and fine-tunes): a 12B MM-DiT with 19 double and 38 single blocks at 3072 wide,
CLIP-L and T5-XXL text encoders, trained by flow matching on 2x2-packed latents."""

from __future__ import annotations

from typing import Any

from masuka.models.architectures.base import (
    KNOWN_WIDTHS,
    ControlNets,
    LoraLayers,
    Match,
    Profile,
    StyleReferences,
    Training,
    width_match,
)
from masuka.models.architectures.shared import (
    CLIP_L,
    T5_XXL,
    VAE_16,
    clip_encoder,
    clip_tokenizer,
    t5_encoder,
    t5_tokenizer,
    tiny_vae,
)

HIDDEN = 3072
DOUBLE_BLOCKS, SINGLE_BLOCKS = 19, 38
ATTENTION = ("attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0")
JOINT_ATTENTION = ATTENTION + ("attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out")
#: layer names only FLUX.2 has (fused single-block projection, SwiGLU feed-forward, shared modulation)
FLUX2_NAMES = (r"single_transformer_blocks_\d+_attn_to_(qkv_mlp_proj|out)",
               r"transformer_blocks_\d+_ff(_context)?_linear", r"(double|single)_stream_modulation")
#: layer names only Qwen-Image has
QWEN_NAMES = r"transformer_blocks_\d+_(img|txt)_(mlp|mod)"


def matches_lora(layers: LoraLayers) -> Match:
    if layers.has(r"(double|single)_blocks_\d+_"):  # BFL / kohya / ai-toolkit original names
        widths = layers.widths(r"double_blocks_\d+_img_attn_qkv|single_blocks_\d+_linear1")
        wide = (layers.outputs(r"single_blocks_\d+_linear1") - {21504}) | (
            layers.outputs(r"double_blocks_\d+_img_mlp_0") - {12288})
        if wide:
            return Match.NO  # FLUX.2's wider SwiGLU
        if max(layers.indices(r"double_blocks_(\d+)_") | {0}) >= DOUBLE_BLOCKS:
            return Match.NO
        return width_match(widths, {HIDDEN}, KNOWN_WIDTHS - {HIDDEN})
    if any(layers.has(name) for name in FLUX2_NAMES) or layers.has(QWEN_NAMES):
        return Match.NO
    double = layers.indices(r"transformer_blocks_(\d+)_")
    single = layers.indices(r"single_transformer_blocks_(\d+)_")
    if not double | single or max(double | {0}) >= DOUBLE_BLOCKS or max(single | {0}) >= SINGLE_BLOCKS:
        return Match.NO
    if layers.has(r"transformer_blocks_\d+_attn2_") or layers.has(r"transformer_blocks_\d+_attn1_"):
        return Match.NO  # SD3.5 Medium's second attention, or a video transformer
    found = width_match(layers.widths(r"(single_)?transformer_blocks_\d+_attn_to_[qkv]$"), {HIDDEN},
                        KNOWN_WIDTHS - {HIDDEN})
    only_flux1 = single or layers.has(r"transformer_blocks_\d+_(ff_net|norm1)") or max(double | {0}) >= 5
    if found is Match.CERTAIN and not only_flux1:
        return Match.FITS  # attention of the first blocks only: FLUX.2 [klein] and Qwen-Image look the same
    return found


_TINY_TRANSFORMER = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                         num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                         axes_dims_rope=[4, 4, 8], guidance_embeds=True)
#: FLUX.1 [dev]'s scheduler (the tiny model is a [dev] in miniature: a folder of it takes [dev]'s defaults)
_DEV_SCHEDULER = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15, shift=3.0,
                      use_dynamic_shifting=True)


def tiny_components(seed: int = 0) -> dict[str, Any]:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    torch.manual_seed(seed)
    return dict(
        transformer=FluxTransformer2DModel(**_TINY_TRANSFORMER),
        text_encoder=clip_encoder("CLIPTextModel"), tokenizer=clip_tokenizer(),
        text_encoder_2=t5_encoder(), tokenizer_2=t5_tokenizer(),
        vae=tiny_vae(4, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035),
        scheduler=FlowMatchEulerDiscreteScheduler(**_DEV_SCHEDULER), image_encoder=None, feature_extractor=None,
    )


def tiny_fill_components(seed: int = 0) -> dict[str, Any]:
    """FLUX.1 Fill in miniature: its transformer also reads the masked picture's latents and the mask (packed
    8x8 per latent pixel), as the published Fill checkpoint does (384 = 64 + 64 + 256 input channels)."""
    from diffusers import FluxTransformer2DModel

    components = {name: part for name, part in tiny_components(seed).items()
                  if name not in ("image_encoder", "feature_extractor")}  # FluxFillPipeline takes neither
    latents = components["transformer"].config.in_channels
    scale = 2 ** (len(components["vae"].config.block_out_channels) - 1)
    components["transformer"] = FluxTransformer2DModel(**{**_TINY_TRANSFORMER, "in_channels": 2 * latents +
                                                          4 * scale * scale, "out_channels": latents})
    return components


_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=DOUBLE_BLOCKS, num_single_layers=SINGLE_BLOCKS,
                    attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                    pooled_projection_dim=768, axes_dims_rope=(16, 56, 56))


def _real(guidance: bool, scheduler: dict) -> dict[str, tuple[str, dict]]:
    return {"transformer": ("FluxTransformer2DModel", dict(_TRANSFORMER, guidance_embeds=guidance)),
            "text_encoder": ("CLIPTextModel", CLIP_L), "text_encoder_2": ("T5EncoderModel", T5_XXL),
            "vae": ("AutoencoderKL", dict(VAE_16, scaling_factor=0.3611, shift_factor=0.1159)),
            "scheduler": ("FlowMatchEulerDiscreteScheduler", scheduler)}


PROFILE = Profile(
    id="flux", label="FLUX.1",
    pipelines={"txt2img": "FluxPipeline", "img2img": "FluxImg2ImgPipeline", "inpaint": "FluxInpaintPipeline",
               "edit": "FluxKontextPipeline", "fill": "FluxFillPipeline"},
    edit_pipelines={"FluxKontextPipeline": 1},
    # Kontext rescales its output to ``max_area`` and its reference to a preferred ~1 MP size by default: asked
    # for the planned size instead, as every other pipeline makes it
    edit_size_arguments={"FluxKontextPipeline": lambda width, height: {"max_area": width * height,
                                                                        "_auto_resize": False}},
    matches_lora=matches_lora, tiny_components=tiny_components, tiny_fill_components=tiny_fill_components,
    big_text_encoder="text_encoder_2", negative_prompt=False,
    defaults=dict(steps=28, guidance=3.5, width=1024, height=1024, max_sequence_length=512),
    # ZeroGPU seconds per step per megapixel: FLUX.1-dev 1024² 28 steps in about 5 s on an H200, with a margin
    step_seconds=0.25,
    memory_gb={"full": 39.5, "model_offload": 25, "fp8_offload": 17.4, "group_offload": 6.4},
    kohya_versions=("flux1", "flux.1", "flux-1"),
    training=Training(
        trainer="Flux",
        target_modules=JOINT_ATTENTION + ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
                                          "proj_mlp"),
        defaults=dict(lr=1e-4, resolution=512, guidance=1.0, sample_steps=20), fp8_below_gb=40),
    real_models={
        "flux-dev": _real(True, _DEV_SCHEDULER),
        "flux-schnell": _real(False, dict(shift=1.0, use_dynamic_shifting=False)),
    },
    # InstantX's union ControlNet: one model for every kind, told the kind by its control mode
    controlnets=ControlNets(pipeline="FluxControlNetPipeline", model="FluxControlNetModel",
                            repos=dict.fromkeys(("canny", "depth", "image"), "InstantX/FLUX.1-dev-Controlnet-Union"),
                            modes={"canny": 0, "image": 1, "depth": 2}),
    style_references=StyleReferences(kind="redux", repo="black-forest-labs/FLUX.1-Redux-dev"),
)
