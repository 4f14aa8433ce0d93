"""Video architecture profiles: what MASUKA needs to know to run a local text/image-to-video pipeline.

A video profile names the diffusers pipeline classes it covers, which pipeline animates a first frame with the
weights already loaded (Wan 2.2 TI2V and LTX-2 do text and image to video with one set of weights), the extra
arguments its call takes, whether it makes sound, and builders of tiny random-weight pipelines for tests. The
memory plans (offload, VAE tiling, fp8 storage of every denoiser, both experts of Wan 2.2 A14B included) are
the image pipelines' own (:mod:`masuka.image.memory`); the catalog (``assets/video_models.json``) holds each
model's memory figures per plan. Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VideoProfile:
    """Every fact about one video architecture; see the module docstring."""

    id: str
    label: str
    #: pipeline classes of this architecture (text-to-video first)
    pipelines: tuple[str, ...]
    #: the loaded pipeline -> the class that animates a first frame with its weights, or ``None`` (text only)
    image_pipeline: Callable[[Any], str | None]
    #: variant -> (pipeline class, builder of random-weight components from a seed), for tests
    tiny: dict[str, tuple[str, Callable[[int], dict[str, Any]]]]
    #: the loaded pipeline and the frame rate -> extra call arguments
    call_arguments: Callable[[Any, int], dict[str, Any]] = lambda _pipe, _fps: {}
    #: the pipeline returns a soundtrack with the frames (``output.audio``)
    audio: bool = False

    def covers(self, pipeline_class: str) -> bool:
        return pipeline_class in self.pipelines


def video_profiles() -> dict[str, VideoProfile]:
    from masuka.models.architectures import ltx2, wan

    return {p.id: p for p in (wan.PROFILE, ltx2.PROFILE)}


def for_video_pipeline(pipeline_class: str) -> VideoProfile | None:
    """The video profile covering a diffusers pipeline class, or ``None`` (the pipeline runs as it is)."""
    return next((p for p in video_profiles().values() if p.covers(pipeline_class)), None)


def tiny_video_pipeline(variant: str, seed: int = 0) -> Any:
    """A miniature random-weight pipeline of a profile's ``variant`` (``wan2.2-ti2v``, ``ltx2``, …)."""
    import diffusers

    for profile in video_profiles().values():
        if variant in profile.tiny:
            class_name, build = profile.tiny[variant]
            return getattr(diffusers, class_name)(**build(seed))
    names = [name for p in video_profiles().values() for name in p.tiny]
    raise ValueError(f"no tiny video pipeline {variant!r}; choose one of {', '.join(names)}")
