"""Qwen-Image (20B): an MM-DiT of 60 blocks at 3072 wide with separate image and text MLPs and modulations
(``img_mlp``, ``txt_mlp``, ``img_mod``), Qwen2.5-VL-7B as text encoder, a Wan-style VAE; real classifier-free
guidance through ``true_cfg_scale`` with a negative prompt."""

from __future__ import annotations

from typing import Any

from masuka.models.architectures.base import KNOWN_WIDTHS, LoraLayers, Match, Profile, Training, width_match
from masuka.models.architectures.flux import FLUX2_NAMES, QWEN_NAMES
from masuka.models.architectures.shared import QWEN_TINY_VOCAB, qwen_tokenizer

HIDDEN, BLOCKS = 3072, 60
#: blocks past FLUX.1's 19: attention-only LoRAs that reach them are Qwen-Image's
FLUX1_DOUBLE_BLOCKS = 19
ATTENTION = ("attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.add_q_proj",
             "attn.add_v_proj", "attn.to_add_out")


def matches_lora(layers: LoraLayers) -> Match:
    blocks = layers.indices(r"transformer_blocks_(\d+)_")
    if (not blocks or max(blocks) >= BLOCKS or layers.has(r"single_transformer_blocks_")
            or any(layers.has(name) for name in FLUX2_NAMES)
            or layers.has(r"transformer_blocks_\d+_(ff_net|ff_context|norm1|attn1|attn2)")):
        return Match.NO
    found = width_match(layers.widths(r"transformer_blocks_\d+_(attn_to_[qkv]$|img_mlp_net_0_proj)"), {HIDDEN},
                        KNOWN_WIDTHS - {HIDDEN})
    if layers.has(QWEN_NAMES):
        return found
    if found is Match.CERTAIN and max(blocks) < FLUX1_DOUBLE_BLOCKS:
        return Match.FITS  # attention of the first blocks only: FLUX.1 looks the same
    return found


def tiny_components(seed: int = 0, vocab: int = QWEN_TINY_VOCAB, **vision_tokens: int) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    text = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=2, rope_theta=1000000.0, vocab_size=vocab, bos_token_id=None,
                eos_token_id=QWEN_TINY_VOCAB - 3,
                rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"})
    # hidden_size and vocab_size go through **kwargs, which its annotated signature leaves out
    values: dict[str, Any] = dict(hidden_size=16, vocab_size=vocab, **vision_tokens)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=dict(depth=2, hidden_size=16, intermediate_size=16,
                                                                    num_heads=2, out_hidden_size=16), **values)
    return dict(
        transformer=QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                                attention_head_dim=16, num_attention_heads=3,
                                                joint_attention_dim=16, axes_dims_rope=(8, 4, 4)),
        text_encoder=Qwen2_5_VLForConditionalGeneration(config).eval(), tokenizer=qwen_tokenizer(),
        vae=AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                   temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4),
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


def tiny_edit_components(seed: int = 0) -> dict[str, Any]:
    """A miniature Qwen-Image-Edit-Plus: the tokenizer learns Qwen2.5-VL's vision tokens, a processor built
    offline (the PIL image processor, small images: at most 4 merged patches per picture) feeds the encoder."""
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor

    tokenizer = qwen_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": VISION_TOKENS}, replace_extra_special_tokens=False)
    ids = {f"{name}_token_id": tokenizer.convert_tokens_to_ids(token) for name, token in
           zip(("vision_start", "vision_end", "image", "video"), VISION_TOKENS, strict=True)}
    components = tiny_components(seed, vocab=QWEN_TINY_VOCAB + len(VISION_TOKENS), **ids)
    images = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56, patch_size=14, merge_size=2,
                                      temporal_patch_size=2)
    return dict(components, tokenizer=tokenizer, processor=Qwen2VLProcessor(image_processor=images,
                                                                            tokenizer=tokenizer))


#: Qwen2.5-VL's markup around a picture in the prompt
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

_QWEN25_VL_7B = dict(
    text_config=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000, rope_theta=1000000.0,
                     rope_scaling={"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"}),
    vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                       fullatt_block_indexes=[7, 15, 23, 31]),
    vocab_size=152064)

PROFILE = Profile(
    id="qwen_image", label="Qwen-Image",
    pipelines={"txt2img": "QwenImagePipeline", "img2img": "QwenImageImg2ImgPipeline",
               "inpaint": "QwenImageInpaintPipeline", "edit": "QwenImageEditPlusPipeline"},
    edit_pipelines={"QwenImageEditPlusPipeline": 3, "QwenImageEditPipeline": 1},
    requires={"QwenImageEditPlusPipeline": "torchvision", "QwenImageEditPipeline": "torchvision"},
    notes=("Qwen-Image-Edit's processor (Qwen2VLProcessor) is built by transformers only with torchvision installed "
           "(pip install torchvision, the build matching your torch; the CPU-only torch wheel has no importable "
           "torchvision). Qwen-Image itself needs no torchvision."),
    matches_lora=matches_lora, tiny_components=tiny_components, tiny_edit_components=tiny_edit_components,
    big_text_encoder="text_encoder", guidance_argument="true_cfg_scale",
    defaults=dict(steps=50, guidance=4.0, width=1328, height=1328),
    # ZeroGPU seconds per step per megapixel: FLUX.1's figure scaled by the transformer size (20B / 12B)
    step_seconds=0.4,
    memory_gb={"full": 58, "model_offload": 42, "fp8_offload": 24, "group_offload": 8},
    kohya_versions=("qwen_image", "qwen-image"),
    training=Training(trainer="QwenImage", target_modules=ATTENTION,
                      defaults=dict(lr=1e-4, resolution=512, guidance=4.0, sample_steps=20), fp8_below_gb=48,
                      too_small={"12gb": "Qwen-Image's 20B transformer needs the 24gb preset or more",
                                 "16gb": "Qwen-Image's 20B transformer needs the 24gb preset or more"}),
    real_models={"qwen-image": {
        "transformer": ("QwenImageTransformer2DModel", {}),
        "text_encoder": ("Qwen2_5_VLForConditionalGeneration", _QWEN25_VL_7B),
        "vae": ("AutoencoderKLQwenImage", {}),
        "scheduler": ("FlowMatchEulerDiscreteScheduler", dict(shift=1.0, use_dynamic_shifting=True,
                                                              base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
                                                              max_image_seq_len=8192, shift_terminal=0.02,
                                                              time_shift_type="exponential")),
    }},
)
