"""The list of video profiles (:mod:`masuka.models.architectures.video_base`), and the questions asked of it.
Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any

from masuka.models.architectures import ltx2, wan
from masuka.models.architectures.video_base import VideoProfile


def video_profiles() -> dict[str, VideoProfile]:
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
