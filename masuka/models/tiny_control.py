"""Miniature random-weight ControlNets, depth model, IP-Adapter and Redux prior for the tiny pipelines
(:mod:`masuka.models.synthetic`), saved as folders that the real ``from_pretrained`` loaders read, built without
any download.

Real ControlNets start with zeroed output layers (a fresh one changes nothing); these are drawn at random
throughout, so that a test sees a control change the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masuka.models import architectures
from masuka.models.synthetic import tiny_components

#: control modes of the tiny FLUX union ControlNet (as many as InstantX's union model has)
UNION_MODES = 10


def tiny_controlnet(architecture: str, seed: int = 0, union: bool = False) -> Any:
    """A ControlNet of the profile's class matching the tiny pipeline of ``architecture`` (a UNet's is made from
    its UNet, and is its union class with ``union``; a transformer's is a union model when its profile has modes)."""
    import diffusers
    import torch

    profile = architectures.require(architecture)
    support = profile.controlnets
    if support is None:
        raise ValueError(f"{profile.label} takes no ControlNet")
    denoiser = tiny_components(architecture, seed)[profile.denoiser]
    cls = getattr(diffusers, support.model)
    if profile.denoiser == "unet":
        net = cls.from_unet(denoiser)
        if union:  # its transformer over the control types is as wide as the first block
            width = denoiser.config.block_out_channels[0]
            config = {k: v for k, v in net.config.items() if not k.startswith("_")}
            net = getattr(diffusers, support.union_model).from_config(
                {**config, "num_trans_channel": width, "num_proj_channel": width, "num_trans_head": 2})
    else:
        config = {k: v for k, v in denoiser.config.items() if not k.startswith("_")}
        net = cls.from_config({**config, "num_mode": UNION_MODES if support.modes else None})
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        for param in net.parameters():
            param.normal_(0, 0.3)
    return net


def save_tiny_controlnet(architecture: str, folder: str | Path, seed: int = 0, union: bool = False) -> Path:
    """Write :func:`tiny_controlnet` as a diffusers folder (safetensors)."""
    folder = Path(folder)
    tiny_controlnet(architecture, seed, union).save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_depth_model(folder: str | Path, seed: int = 0) -> Path:
    """Write a miniature DPT depth-estimation model and its image processor as a transformers folder."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    folder = Path(folder)
    torch.manual_seed(seed)
    config = DPTConfig(image_size=32, patch_size=16, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=37, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 32, 32],
                       reassemble_factors=[4, 2, 1, 0.5], fusion_hidden_size=16, head_in_index=-1, is_hybrid=False)
    DPTForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def save_tiny_ip_adapter(architecture: str, folder: str | Path, seed: int = 0) -> Path:
    """Write a random IP-Adapter for the tiny pipeline of ``architecture`` in the layout its profile declares
    (``folder/subfolder/weight_name`` and a CLIP image encoder in ``folder/subfolder/image_encoder``), the layout
    ``load_ip_adapter`` reads from h94/IP-Adapter. Returns ``folder``, to use as the repo."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    support = architectures.require(architecture).style_references
    if support is None:
        raise ValueError(f"{architecture!r} takes no style reference")
    unet = tiny_components(architecture, seed)["unet"]
    torch.manual_seed(seed)
    embed, cross = 32, unet.config.cross_attention_dim
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=embed, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, projection_dim=embed)).save_pretrained(folder / support.subfolder / support.image_encoder)
    tensors = {"image_proj.proj.weight": torch.randn(4 * cross, embed), "image_proj.proj.bias": torch.randn(4 * cross),
               "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    key = 1  # diffusers numbers the cross-attention layers 1, 3, 5, ... (the original's attention processor ids)
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            hidden = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
            tensors[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn(hidden, cross)
            tensors[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn(hidden, cross)
            key += 2
    save_file(tensors, folder / support.subfolder / support.weight_name)
    return folder


def save_tiny_redux(architecture: str, folder: str | Path, seed: int = 0) -> Path:
    """Write a miniature FLUX.1 Redux prior pipeline (SigLIP image encoder, Redux embedder sized for the tiny
    pipeline's text features) as a diffusers folder."""
    import torch
    from diffusers import FluxPriorReduxPipeline
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    folder = Path(folder)
    text_width = tiny_components(architecture, seed)["transformer"].config.joint_attention_dim
    torch.manual_seed(seed)
    encoder = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                                   num_attention_heads=4, image_size=32, patch_size=8))
    prior = FluxPriorReduxPipeline(image_encoder=encoder,
                                   feature_extractor=SiglipImageProcessor(size={"height": 32, "width": 32}),
                                   image_embedder=ReduxImageEncoder(redux_dim=32, txt_in_features=text_width))
    prior.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]  # DiffusionPipeline method mypy misses
    return folder
