"""LoRAs for models MASUKA does not run, recognised so that they are refused with what they are for."""

from __future__ import annotations

from collections.abc import Callable

from masuka.models.architectures.base import LoraLayers
from masuka.models.architectures.sdxl import CROSS_ATTENTION, UNET


def _unet_cross(layers: LoraLayers, width: int) -> bool:
    return width in layers.widths(CROSS_ATTENTION) or width in layers.widths(r"te_.*(q|k|v)_proj$")


def _hunyuan_video(layers: LoraLayers) -> bool:
    if layers.has(r"(double_blocks_\d+_img_mlp_fc|txt_in_|context_embedder_token_refiner)"):
        return True
    double = layers.indices(r"(?:double_blocks|transformer_blocks)_(\d+)_")
    single = layers.indices(r"(?:single_blocks|single_transformer_blocks)_(\d+)_")
    return bool(single) and (max(single) >= 38 or max(double | {0}) == 19)  # 20 double, 40 single blocks


#: UNet families, whose LoRAs have SDXL's layer names and differ in cross-attention width: (what the file is for,
#: its test), in the order they are tried
UNET_FAMILIES: list[tuple[str, Callable[[LoraLayers], bool]]] = [
    ("SD 1.x", lambda layers: _unet_cross(layers, 768) and not layers.has("te2_")),
    ("SD 2.x", lambda layers: _unet_cross(layers, 1024) and not layers.has("te2_")),
]
#: transformer families, the same way
TRANSFORMER_FAMILIES: list[tuple[str, Callable[[LoraLayers], bool]]] = [
    ("Wan (video)", lambda layers: layers.has(r"blocks_\d+_(self_attn|cross_attn|attn1|attn2|ffn)_")),
    ("LTX-Video", lambda layers: layers.has(r"transformer_blocks_\d+_attn1_")
     and layers.has(r"transformer_blocks_\d+_attn2_")),
    ("CogVideoX", lambda layers: layers.has(r"transformer_blocks_\d+_attn1_")),
    ("HunyuanVideo", _hunyuan_video),
]
#: kohya ``ss_base_model_version`` prefixes of refused families, for files whose layers say too little
VERSIONS = {"sd_v1": "SD 1.x", "sd_v2": "SD 2.x", "wan": "Wan (video)", "ltx": "LTX-Video",
            "hunyuan_video": "HunyuanVideo", "cogvideo": "CogVideoX"}


def foreign_family(layers: LoraLayers) -> str | None:
    """What a LoRA of a refused family is for, or ``None``. Asked only when no profile is certain of the file
    (:func:`~masuka.models.architectures.registry.identify_lora`)."""
    families = UNET_FAMILIES if layers.has(UNET) or layers.has("te") else TRANSFORMER_FAMILIES
    return next((name for name, test in families if test(layers)), None)
