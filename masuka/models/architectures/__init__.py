"""One profile per model architecture (FLUX.1, FLUX.2, SD3, SDXL, Qwen-Image, Z-Image) and the list of them.

Everything that differs between architectures asks a profile: see :mod:`.base` for what a profile holds,
:mod:`.registry` for the list, and ADDING.md at the repository root for adding one. Importing this package
does not import torch.
"""

from masuka.models.architectures.base import LoraLayers, Match, Profile, Training, lora_layers
from masuka.models.architectures.registry import (
                                                  PROFILES,
                                                  UnknownLora,
                                                  for_pipeline,
                                                  get,
                                                  identify_lora,
                                                  is_lycoris,
                                                  labels,
                                                  require,
)

__all__ = ["PROFILES", "LoraLayers", "Match", "Profile", "Training", "UnknownLora", "for_pipeline", "get",
           "identify_lora", "is_lycoris", "labels", "lora_layers",
           "require"]
