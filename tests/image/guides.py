"""Helpers the control and reference tests share: a 64x64 generation on a tiny model, its pixels, a test
picture, and a profile's declarations pointed at tiny local models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from masuka.image.generate import ImageRequest, generate_images
from masuka.models.architectures.registry import PROFILES


def run(studio, model, **kw):
    """One 64x64 image of ``model`` in 2 steps with a fixed seed; ``kw`` adds to or overrides the request."""
    values = dict(prompt="a lighthouse", model=str(model), steps=2, seed=7, width=64, height=64)
    values.update(kw)
    return generate_images(studio, ImageRequest(**values))[0]


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(result.path).convert("RGB"), dtype=np.int16)


def square_picture(folder: Path) -> Path:
    """A black square on white, 64x64."""
    picture = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(picture).rectangle((16, 16, 47, 47), fill="black")
    picture.save(folder / "square.png")
    return folder / "square.png"


def point_profile(monkeypatch, architecture: str, controlnet: str | None = None, reference: str | None = None):
    """The profile of ``architecture`` with every ControlNet kind served by ``controlnet`` and its reference model
    (IP-Adapter or Redux) at ``reference``, for the test."""
    profile = PROFILES[architecture]
    changes = {}
    if controlnet:
        changes["controlnets"] = dataclasses.replace(profile.controlnets,
                                                     repos=dict.fromkeys(profile.controlnets.repos, controlnet))
    if reference:
        changes["style_references"] = dataclasses.replace(profile.style_references, repo=reference)
    monkeypatch.setitem(PROFILES, architecture, dataclasses.replace(profile, **changes))


def go_offline(monkeypatch) -> None:
    """``HF_HUB_OFFLINE=1``, as the environment and the Hub client (which read it at import) both see it."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def offline_refusal(capsys, code: int) -> str:
    """The one ``error:`` line of a CLI run refused (exit 2) because a guide model is not downloaded offline."""
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and "is not downloaded and the Hugging Face Hub" in line, line
    assert "(offline: HF_HUB_OFFLINE is set)" in line, line
    return line
