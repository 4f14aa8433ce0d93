"""Video architecture profiles: what MASUKA needs to know to run a local text/image-to-video pipeline.

A video profile names the diffusers pipeline classes it covers, which pipeline animates a first frame with the
weights already loaded (Wan 2.2 TI2V and LTX-2 do text and image to video with one set of weights), the extra
arguments its call takes, whether it makes sound, and builders of tiny random-weight pipelines for tests. The
memory plans (offload, VAE tiling, fp8 storage of every denoiser, both experts of Wan 2.2 A14B included) are
the image pipelines' own (:mod:`masuka.image.memory`); the catalog (``assets/video_models.json``) holds each
model's memory figures per plan. Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VideoProfile:
    """Every fact about one video architecture; see the module docstring."""

    id: str
    label: str
    #: pipeline classes of this architecture (text-to-video first)
    pipelines: tuple[str, ...]
    #: (pipeline class, its config: ``model_index.json``) -> the class that animates a first frame with its
    #: weights, or ``None`` (text only)
    image_pipeline: Callable[[str, Mapping[str, Any]], str | None]
    #: variant -> (pipeline class, builder of random-weight components from a seed), for tests
    tiny: dict[str, tuple[str, Callable[[int], dict[str, Any]]]]
    #: the loaded pipeline and the frame rate -> extra call arguments
    call_arguments: Callable[[Any, int], dict[str, Any]] = lambda _pipe, _fps: {}
    #: the pipeline returns a soundtrack with the frames (``output.audio``)
    audio: bool = False
    #: (pipeline class, its config) -> the class that makes a video from text alone with its weights (an
    #: image-to-video folder of weights that do both runs it, sharing the modules), or ``None``: they need a first
    #: frame (Wan 2.1 I2V's transformer takes the frame's latents as input channels), refused without one before
    #: anything loads
    text_pipeline: Callable[[str, Mapping[str, Any]], str | None] = lambda pipeline_class, _config: pipeline_class

    def covers(self, pipeline_class: str) -> bool:
        return pipeline_class in self.pipelines
