"""Stable Diffusion XL (and fine-tunes such as Playground v2.5): a UNet whose cross-attention reads 2048-wide
text features from two CLIP encoders; trained by denoising with size/crop conditioning."""

from __future__ import annotations

from typing import Any

from masuka.models.architectures.base import ControlNets, LoraLayers, Match, Profile, StyleReferences, Training
from masuka.models.architectures.shared import CLIP_G, CLIP_L, VAE, clip_encoder, clip_tokenizer, tiny_vae

#: layer names of a UNet, in diffusers and in kohya (original Stability) naming
UNET = r"(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)_"
CROSS_ATTENTION = UNET + r".*attn2_to_k$"
#: cross-attention widths of SD 1.x and SD 2.x, whose LoRAs share SDXL's layer names
OLDER_CROSS = {768, 1024}


def matches_lora(layers: LoraLayers) -> Match:
    if layers.has("te_"):
        return Match.NO  # kohya names one text encoder "te": SD 1.x / 2.x
    if layers.has("te2_"):
        return Match.CERTAIN
    if not layers.has(UNET) and not layers.has("te1_"):
        return Match.NO
    cross = layers.widths(CROSS_ATTENTION)
    if cross & OLDER_CROSS:
        return Match.NO
    return Match.CERTAIN if cross == {2048} else Match.FITS


def tiny_components(seed: int = 0) -> dict[str, Any]:
    import torch
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    return dict(
        unet=UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8,
                                  in_channels=4, out_channels=4,
                                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                  attention_head_dim=(2, 4), use_linear_projection=True,
                                  addition_embed_type="text_time", addition_time_embed_dim=8,
                                  transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
                                  cross_attention_dim=64, norm_num_groups=1),
        text_encoder=clip_encoder("CLIPTextModel"), tokenizer=clip_tokenizer(),
        text_encoder_2=clip_encoder("CLIPTextModelWithProjection"), tokenizer_2=clip_tokenizer(),
        vae=tiny_vae(4),
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                         beta_schedule="scaled_linear", timestep_spacing="leading"),
        image_encoder=None, feature_extractor=None,
    )


_REAL = {
    "unet": ("UNet2DConditionModel", dict(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
        transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)),
    "text_encoder": ("CLIPTextModel", CLIP_L), "text_encoder_2": ("CLIPTextModelWithProjection", CLIP_G),
    "vae": ("AutoencoderKL", dict(VAE, latent_channels=4, scaling_factor=0.13025)),
    "scheduler": ("EulerDiscreteScheduler", dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 steps_offset=1, timestep_spacing="leading")),
}

#: Playground v2.5: SDXL's architecture trained on the EDM formulation, so it ships an EDM scheduler
_PLAYGROUND = dict(_REAL, scheduler=("EDMDPMSolverMultistepScheduler", dict(
    sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, sigma_schedule="exponential", num_train_timesteps=1000,
    prediction_type="epsilon", solver_order=2, algorithm_type="dpmsolver++", final_sigmas_type="zero")))

PROFILE = Profile(
    id="sdxl", label="SDXL", prompt_style="tags",
    pipelines={"txt2img": "StableDiffusionXLPipeline", "img2img": "StableDiffusionXLImg2ImgPipeline",
               "inpaint": "StableDiffusionXLInpaintPipeline"},
    matches_lora=matches_lora, tiny_components=tiny_components,
    denoiser="unet", scheduler_family="diffusion", size_multiple=8, lora_layers_argument="unet_lora_layers",
    baseline_fp32=True,
    defaults=dict(steps=30, guidance=7.0, width=1024, height=1024),
    # ZeroGPU seconds per step per megapixel: SDXL 30 steps at 1024² in about 2 s on an H200, with a margin
    step_seconds=0.08,
    memory_gb={"full": 10, "model_offload": 7, "fp8_offload": 5, "group_offload": 3},
    kohya_versions=("sdxl", "sd_xl"),
    training=Training(trainer="SDXL", target_modules=("to_k", "to_q", "to_v", "to_out.0"),
                      text_encoder_targets=("q_proj", "k_proj", "v_proj", "out_proj"),
                      defaults=dict(lr=1e-4, resolution=1024, guidance=1.0, sample_steps=25)),
    real_models={"sdxl": _REAL, "playground-v2.5": _PLAYGROUND},
    # one ControlNet per kind, so each control keeps its own weight and start/end (a union model takes one)
    controlnets=ControlNets(pipeline="StableDiffusionXLControlNetPipeline", model="ControlNetModel",
                            repos={"canny": "diffusers/controlnet-canny-sdxl-1.0",
                                   "depth": "diffusers/controlnet-depth-sdxl-1.0",
                                   "image": "xinsir/controlnet-tile-sdxl-1.0"},
                            # xinsir/controlnet-union-sdxl-1.0 and its like, when named (--controlnet)
                            union_pipeline="StableDiffusionXLControlNetUnionPipeline",
                            union_model="ControlNetUnionModel", union_modes={"canny": 3, "depth": 1}),
    style_references=StyleReferences(kind="ip-adapter", repo="h94/IP-Adapter", subfolder="sdxl_models",
                                     weight_name="ip-adapter_sdxl.safetensors"),
)
