"""Pipelines with random weights, built without any download.

``tiny`` builds miniature Flux, SD3 and SDXL pipelines (a few layers, a tokenizer written from a small
vocabulary) that run in a fraction of a second on a CPU: the test suite and CPU benchmarks load them through
the real ``from_pretrained`` path after :func:`save_tiny_pipeline` writes them to a folder;
:func:`save_tiny_lora` writes a LoRA that fits them.

``real`` builds the real architectures of catalog models from their published config values
(:data:`REAL_MODELS`), with random weights: the same speed and memory as the real model, so GPU benchmarks
run without downloading anything. Modules are built on the ``meta`` device and materialised straight on the
target device in the target dtype, so a 12B-parameter transformer never passes through CPU memory in fp32.
Tokenizers are the small offline ones: prompts are padded to the real sequence lengths all the same.

``python -m masuka.models.synthetic ARCH FOLDER`` writes a tiny pipeline folder usable as a model.
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
    return _pipeline(architecture, tiny_components(architecture, seed))


def _pipeline(architecture: str, components: dict[str, Any]) -> Any:
    import diffusers

    if architecture in ("flux", "sdxl"):
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


#: Modules a LoRA targets in the tiny denoisers, and the keyword their pipeline saves them under.
_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
_LORA_LAYERS = {"flux": "transformer_lora_layers", "sd3": "transformer_lora_layers", "sdxl": "unet_lora_layers"}


def save_tiny_lora(architecture: str, path: str | Path, rank: int = 4, seed: int = 1) -> Path:
    """Write a random LoRA (``path``, a .safetensors file) for the tiny pipeline of ``architecture``."""
    import diffusers
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    components = tiny_components(architecture)
    denoiser = components.get("transformer") or components["unet"]
    torch.manual_seed(seed)
    denoiser.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=_LORA_TARGETS))
    getattr(diffusers, PIPELINE_CLASSES[architecture]).save_lora_weights(
        path.parent, weight_name=path.name, safe_serialization=True,
        **{_LORA_LAYERS[architecture]: get_peft_model_state_dict(denoiser)})
    return path


# -- real architectures -------------------------------------------------------------------------------------

_CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
               num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
               bos_token_id=0, eos_token_id=2, pad_token_id=1)
_CLIP_G = dict(_CLIP_L, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
               hidden_act="gelu", projection_dim=1280)
_T5_XXL = dict(vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,
               feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, relative_attention_max_distance=128)
_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
            norm_num_groups=32, sample_size=1024, force_upcast=True)
_VAE_16 = dict(_VAE, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)
_FLUX = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
             num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, axes_dims_rope=(16, 56, 56))
_FLUX_SCHEDULER = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15, shift=3.0,
                       use_dynamic_shifting=True)
_SD35 = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, attention_head_dim=64,
             joint_attention_dim=4096, pooled_projection_dim=2048, qk_norm="rms_norm")


def _flux(guidance: bool, scheduler: dict) -> dict[str, tuple[str, dict]]:
    return {"transformer": ("FluxTransformer2DModel", dict(_FLUX, guidance_embeds=guidance)),
            "text_encoder": ("CLIPTextModel", _CLIP_L), "text_encoder_2": ("T5EncoderModel", _T5_XXL),
            "vae": ("AutoencoderKL", dict(_VAE_16, scaling_factor=0.3611, shift_factor=0.1159)),
            "scheduler": ("FlowMatchEulerDiscreteScheduler", scheduler)}


def _sd35(**transformer: Any) -> dict[str, tuple[str, dict]]:
    return {"transformer": ("SD3Transformer2DModel", dict(_SD35, **transformer)),
            "text_encoder": ("CLIPTextModelWithProjection", _CLIP_L),
            "text_encoder_2": ("CLIPTextModelWithProjection", _CLIP_G), "text_encoder_3": ("T5EncoderModel", _T5_XXL),
            "vae": ("AutoencoderKL", dict(_VAE_16, scaling_factor=1.5305, shift_factor=0.0609)),
            "scheduler": ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0))}


_SDXL = {
    "unet": ("UNet2DConditionModel", dict(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
        transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)),
    "text_encoder": ("CLIPTextModel", _CLIP_L), "text_encoder_2": ("CLIPTextModelWithProjection", _CLIP_G),
    "vae": ("AutoencoderKL", dict(_VAE, latent_channels=4, scaling_factor=0.13025)),
    "scheduler": ("EulerDiscreteScheduler", dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 steps_offset=1, timestep_spacing="leading")),
}

#: catalog id -> (architecture, component -> (class name, config values of the published checkpoint))
REAL_MODELS: dict[str, tuple[str, dict[str, tuple[str, dict]]]] = {
    "flux-dev": ("flux", _flux(True, _FLUX_SCHEDULER)),
    "flux-schnell": ("flux", _flux(False, dict(shift=1.0, use_dynamic_shifting=False))),
    "sd35-large": ("sd3", _sd35(num_layers=38, num_attention_heads=38, caption_projection_dim=2432,
                                pos_embed_max_size=192)),
    "sd35-medium": ("sd3", _sd35(num_layers=24, num_attention_heads=24, caption_projection_dim=1536,
                                 pos_embed_max_size=384, dual_attention_layers=tuple(range(13)))),
    "sdxl": ("sdxl", _SDXL),
    "playground-v2.5": ("sdxl", _SDXL),
}
_TOKENIZERS = {"CLIPTextModel": clip_tokenizer, "CLIPTextModelWithProjection": clip_tokenizer,
               "T5EncoderModel": t5_tokenizer}


def real_pipeline(model_id: str, device: str = "meta", dtype: Any = None, seed: int = 0) -> Any:
    """The real architecture of catalog model ``model_id`` with random weights on ``device`` in ``dtype``.

    ``device="meta"`` builds the structure only (no memory, a second or two), enough to count parameters.
    """
    if model_id not in REAL_MODELS:
        raise ValueError(f"no real architecture for {model_id!r}; known: {', '.join(REAL_MODELS)}")
    import diffusers
    import torch

    architecture, specs = REAL_MODELS[model_id]
    generator = None if device == "meta" else torch.Generator(device).manual_seed(seed)
    components: dict[str, Any] = {}
    for name, (class_name, config) in specs.items():
        if class_name.endswith("Scheduler"):
            components[name] = getattr(diffusers, class_name)(**config)
            continue
        components[name] = random_module(class_name, config, device, dtype or torch.float32, generator)
        if class_name in _TOKENIZERS:
            components[name.replace("text_encoder", "tokenizer")] = _TOKENIZERS[class_name]()
    return _pipeline(architecture, components)


def random_module(class_name: str, config: dict, device: str, dtype: Any, generator: Any = None) -> Any:
    """A diffusers or transformers model built on ``meta`` and, unless ``device`` is meta, materialised there."""
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    cls = getattr(diffusers, class_name, None) or getattr(transformers, class_name)
    with init_empty_weights():
        module = cls(cls.config_class(**config)) if issubclass(cls, transformers.PreTrainedModel) else cls(**config)
    if hasattr(module, "tie_weights"):
        module.tie_weights()  # T5's token embedding is shared with its encoder
    if device != "meta":
        materialise(module, device, dtype, generator)
    return module.eval()


def materialise(module: Any, device: str, dtype: Any, generator: Any = None) -> None:
    """Give every ``meta`` parameter of ``module`` random values (N(0, 0.02)) created directly on ``device``."""
    import torch
    from accelerate.utils import set_module_tensor_to_device

    with torch.no_grad():
        for name, param in list(module.named_parameters()):
            value = torch.empty(param.shape, dtype=dtype, device=device).normal_(0, 0.02, generator=generator)
            set_module_tensor_to_device(module, name, device, value=value, dtype=dtype)
    if hasattr(module, "tie_weights"):
        module.tie_weights()
    module.to(device)  # buffers: built with their real values at construction


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m masuka.models.synthetic",
                                     description="Write a tiny random-weight pipeline folder (a usable model).")
    parser.add_argument("architecture", choices=TINY_ARCHITECTURES)
    parser.add_argument("folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    save_tiny_pipeline(args.architecture, args.folder, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
